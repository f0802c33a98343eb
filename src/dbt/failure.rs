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

/// The line of an error text that names the cause: the exception's own line
/// (`IOException: IO Error: Could not set lock on file …`) when the text holds
/// a Python traceback, dbt's message when it holds an "Encountered an error:"
/// block; otherwise the text as it is. Never a traceback's header or frames.
pub fn cause(text: &str) -> String {
    if let Some(start) = text.find(TRACEBACK) {
        // The exception line is the last unindented line after the frames
        // (`File "…", line N` and the source under it are indented).
        let after = &text[start + TRACEBACK.len()..];
        let exception = after.lines().rev().find(|l| {
            !l.trim().is_empty()
                && !l.starts_with(char::is_whitespace)
                && !l.starts_with(TRACEBACK)
                && !chained(l)
        });
        if let Some(line) = exception {
            let before = text[..start].trim();
            // What dbt said before the traceback names the node, when it does.
            return match before.lines().rfind(|l| !l.trim().is_empty()) {
                Some(head) if head.trim_end().ends_with(':') => {
                    format!("{} {}", head.trim(), line.trim())
                }
                _ => line.trim().to_string(),
            };
        }
    }
    error_message(text).unwrap_or_else(|| text.to_string())
}

const TRACEBACK: &str = "Traceback (most recent call last):";

/// Python's words between chained tracebacks.
fn chained(l: &str) -> bool {
    l.starts_with("During handling of the above exception")
        || l.starts_with("The above exception was the direct cause")
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
    fn a_traceback_gives_its_exception_line_not_its_header() {
        let text = "Traceback (most recent call last):\n  File \"/v/lib/python3.11/site-packages/dbt/adapters/duckdb/connections.py\", line 41, in open\n    conn = duckdb.connect(path)\n           ^^^^^^^^^^^^^^^^^^^^\n_duckdb.IOException: IO Error: Could not set lock on file \"/wh/one.duckdb\": Conflicting lock is held in /usr/bin/python3.11 (PID 4242)\n";
        assert_eq!(
            cause(text),
            "_duckdb.IOException: IO Error: Could not set lock on file \"/wh/one.duckdb\": Conflicting lock is held in /usr/bin/python3.11 (PID 4242)"
        );
    }

    #[test]
    fn a_chained_traceback_gives_the_last_exception() {
        let text = "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\n    x()\nKeyError: 'path'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"b.py\", line 2, in g\n    y()\ndbt_common.exceptions.base.DbtRuntimeError: Runtime Error\n";
        assert_eq!(
            cause(text),
            "dbt_common.exceptions.base.DbtRuntimeError: Runtime Error"
        );
    }

    #[test]
    fn what_precedes_a_traceback_names_the_node_and_plain_errors_stay_as_they_are() {
        let text = "model.shop.orders:\nTraceback (most recent call last):\n  File \"x.py\", line 3\npsycopg2.OperationalError: server closed the connection unexpectedly\n";
        assert_eq!(
            cause(text),
            "model.shop.orders: psycopg2.OperationalError: server closed the connection unexpectedly"
        );
        let plain = "model.shop.orders: Database Error\n  relation \"x\" does not exist";
        assert_eq!(cause(plain), plain);
    }

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
