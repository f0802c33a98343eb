//! The user's own pager and editor, given the terminal for a while: the TUI
//! leaves the alternate screen (as on Ctrl-Z), waits for the program, and
//! takes the screen back. `$PAGER` and `$EDITOR` may carry arguments, so they
//! run through `sh -c`, with the files as separate arguments (never pasted
//! into the command line).

use std::path::PathBuf;
use std::process::{Command, Stdio};

const DEFAULT_PAGER: &str = "less -R";
const DEFAULT_EDITOR: &str = "vi";

pub enum Program {
    Pager,
    Editor,
}

/// The shell command line that opens `files` in the user's program.
fn command_line(program: &Program) -> String {
    let (var, default) = match program {
        Program::Pager => ("PAGER", DEFAULT_PAGER),
        Program::Editor => ("EDITOR", DEFAULT_EDITOR),
    };
    let chosen = std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    // "$@": the files, each one argument whatever characters its path has.
    format!("{chosen} \"$@\"")
}

/// Runs the program on the files in the foreground and waits for it. The
/// caller has handed the terminal over. Returns why it could not run, if so.
pub fn run(program: &Program, files: &[PathBuf]) -> Result<(), String> {
    let line = command_line(program);
    let status = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .arg("sh")
        .args(files)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot start {line}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{line} ended with {status}"))
    }
}
