//! Words quoted for a POSIX shell: a command dbt-herd ran, written so that a
//! person can paste it into a shell and run it by hand as it ran.

use std::borrow::Cow;

/// `word` as one shell word: as it is when no character in it means anything
/// to a shell, else in single quotes (inside which a shell takes every
/// character literally; a single quote itself becomes `'\''`).
pub fn quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.chars().all(plain) {
        return Cow::Borrowed(word);
    }
    Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
}

/// Characters no POSIX shell treats specially anywhere in an argument. Nothing
/// beyond ASCII: in some locales a shell splits words on a non-ASCII blank.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '@' | '%' | '=')
}

/// A name a shell takes in `NAME=value` before a command.
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One line that runs `argv` with `env` added to the shell's environment:
/// `NAME=value … program arg …`. When a name is not one a shell accepts there,
/// the assignments go through `env` instead (`env 'NAME=value' … program …`).
pub fn command_line(env: &[(&str, &str)], argv: &[String]) -> String {
    let mut words: Vec<Cow<'_, str>> = Vec::with_capacity(env.len() + argv.len() + 1);
    if env.iter().all(|(k, _)| is_name(k)) {
        words.extend(
            env.iter()
                .map(|(k, v)| Cow::Owned(format!("{k}={}", quote(v)))),
        );
    } else {
        words.push(Cow::Borrowed("env"));
        words.extend(
            env.iter()
                .map(|(k, v)| Cow::Owned(quote(&format!("{k}={v}")).into_owned())),
        );
    }
    if let Some((program, args)) = argv.split_first() {
        // A program word that reads as NAME=value would be taken for one more
        // assignment: quoted, it is a command.
        words.push(match quote(program) {
            Cow::Borrowed(p) if p.contains('=') => Cow::Owned(format!("'{p}'")),
            q => q,
        });
        words.extend(args.iter().map(|a| quote(a)));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `line`: each word it passes to the command, one per line.
    fn words_by_sh(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn plain_words_stay_as_they_are() {
        for w in [
            "dbt",
            "/venv/bin/dbt",
            "--threads",
            "tag:daily,tag:x",
            "a=b",
            "+m1",
        ] {
            assert_eq!(quote(w), w);
        }
    }

    #[test]
    fn words_a_shell_would_change_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("café"), "'café'");
        assert_eq!(quote("~/x"), "'~/x'");
        assert_eq!(
            quote(r#"{"start_date":"2024-01-05"}"#),
            r#"'{"start_date":"2024-01-05"}'"#
        );
    }

    /// The shell gives back exactly the words that were quoted.
    #[test]
    fn a_shell_reads_back_every_word_as_it_was() {
        let words = [
            "",
            "two words",
            "it's",
            "'",
            "''",
            "$HOME",
            "`id`",
            "$(id)",
            "a\\b",
            "*",
            "#not a comment",
            "~",
            "!x",
            "日本 🦀 é",
            r#"{"a": "b c"}"#,
            "-n",
        ];
        let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        // printf repeats its format per word: an empty word is an empty line.
        assert_eq!(words_by_sh(&line), words);
    }

    #[test]
    fn a_command_line_sets_its_env_before_the_program() {
        let argv: Vec<String> = ["/venv/bin/dbt", "build", "--vars", "{a: 1}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            command_line(&[("DB", "/w h/1.duckdb"), ("BATCH", "b")], &argv),
            "DB='/w h/1.duckdb' BATCH=b /venv/bin/dbt build --vars '{a: 1}'"
        );
        assert_eq!(command_line(&[], &argv[..2]), "/venv/bin/dbt build");
        // A program that looks like an assignment is still the command.
        assert_eq!(
            command_line(&[("A", "1")], &["x=y".to_string()]),
            "A=1 'x=y'"
        );
        // A name no shell accepts before a command goes through env.
        assert_eq!(
            command_line(&[("A-B", "1 2")], &argv[..1]),
            "env 'A-B=1 2' /venv/bin/dbt"
        );
    }

    /// Run by `sh -c`, the line gives the program its args and env as they were.
    #[test]
    fn sh_runs_the_command_line_with_its_env_and_args() {
        let argv: Vec<String> = [
            "sh",
            "-c",
            "printf '%s|' \"$HERD_Q\" \"$@\"",
            "zero",
            "it's",
            "$x y",
        ]
        .map(String::from)
        .to_vec();
        let line = command_line(&[("HERD_Q", "a 'b' $c")], &argv);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "a 'b' $c|it's|$x y|"
        );
    }
}
