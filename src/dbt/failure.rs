//! dbt's own words when a command fails before it runs anything (a missing
//! target, a broken `profiles.yml`, a bad selector): the text after
//! "Encountered an error:", without the banners, the source listing and the
//! blank lines that make its last line useless alone (`- dev`, or
//! `in "<unicode string>", line 6, column 6`).

/// The longest message kept, in characters.
const MAX: usize = 600;

/// dbt's error message from its plain-text output, on one line; `None` when
/// the output holds no "Encountered an error:" block.
pub fn error_message(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim_end().ends_with("Encountered an error:"))?;
    let mut parts: Vec<&str> = Vec::new();
    for line in &lines[start + 1..] {
        let t = line.trim();
        if t.is_empty() || banner(t) || listing(t) || t.chars().all(|c| c == '-') {
            continue;
        }
        if parts.last() != Some(&t) {
            parts.push(t);
        }
    }
    if parts.is_empty() {
        return None;
    }
    let text = parts.join(" ");
    Some(if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text
    })
}

/// `Runtime Error`, `Compilation Error`, `Raw Error:` and the like: headings.
fn banner(t: &str) -> bool {
    let words: Vec<&str> = t.trim_end_matches(':').split_whitespace().collect();
    words.len() <= 2 && words.last().is_some_and(|w| *w == "Error")
}

/// A line of the source listing dbt prints around a YAML error (`6  |  path: x`).
fn listing(t: &str) -> bool {
    let Some((number, _)) = t.split_once('|') else {
        return false;
    };
    let n = number.trim();
    !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_target_names_the_target_and_the_valid_ones() {
        let out = "\u{1b}[0m01:24:46  Running with dbt=1.11.16\n\u{1b}[0m01:24:46  Encountered an error:\nRuntime Error\n  The profile 'gen' does not have a target named 'nope'. The valid target names for this profile are:\n   - dev\n";
        assert_eq!(
            error_message(out).unwrap(),
            "The profile 'gen' does not have a target named 'nope'. The valid target names for this profile are: - dev"
        );
    }

    #[test]
    fn a_yaml_error_in_profiles_keeps_the_problem_and_drops_the_listing() {
        let out = "01:24:49  Encountered an error:\nRuntime Error\n  \n  dbt encountered an error while trying to read your profiles.yml file.\n  \n  Runtime Error\n    Syntax error near line 6\n    ------------------------------\n    3  |   outputs:\n    4  |     dev:\n    6  |      path: x\n    7  | \n    \n    Raw Error:\n    ------------------------------\n    while parsing a block mapping\n      in \"<unicode string>\", line 4, column 5\n    did not find expected key\n";
        assert_eq!(
            error_message(out).unwrap(),
            "dbt encountered an error while trying to read your profiles.yml file. Syntax error near line 6 while parsing a block mapping in \"<unicode string>\", line 4, column 5 did not find expected key"
        );
    }

    #[test]
    fn output_without_an_error_block_gives_nothing() {
        assert_eq!(error_message("just a line\n"), None);
        assert_eq!(
            error_message("Encountered an error:\nRuntime Error\n"),
            None
        );
    }
}
