//! Drives the real binary in a real terminal: a private tmux server per test (its
//! own socket, no user config), keys in, screen text and terminal state out.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
    conf: tempfile::NamedTempFile,
}

/// A command line as one `sh -c` string, each word single-quoted.
pub fn shell_line<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    words
        .into_iter()
        .map(|w| format!("'{}'", w.as_ref().to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Tmux {
    /// A new server whose first session `main` runs `command` in a `width`×`height`
    /// terminal. `tmux_conf` is extra configuration (e.g. `set -g set-clipboard on`).
    /// The shell stays open after the command and prints `EXIT=<status>`.
    pub fn start(name: &str, command: &str, width: u16, height: u16, tmux_conf: &str) -> Self {
        use std::io::Write;
        let mut conf = tempfile::NamedTempFile::new().unwrap();
        writeln!(conf, "set -g status off\n{tmux_conf}").unwrap();
        let t = Tmux {
            socket: format!("herd-test-{name}-{}", std::process::id()),
            conf,
        };
        let script = format!("{command}; echo EXIT=$?; sleep 600");
        let out = t.run([
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
            "-c",
            &script,
        ]);
        assert!(out.status.success(), "tmux failed: {out:?}");
        t
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(self.conf.path())
            .args(args)
            .output()
            .expect("tmux is installed")
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// The visible screen of `target` (a session or pane), as text.
    pub fn screen_of(&self, target: &str) -> String {
        self.text(&["capture-pane", "-p", "-t", target])
    }

    pub fn screen(&self) -> String {
        self.screen_of("main")
    }

    /// tmux key names, e.g. `["q"]`, `["Enter"]`, `["Tab"]`.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
        // The TUI reads keys asynchronously; a short pause keeps them in order
        // with what the test looks at next.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Waits until the screen satisfies `pred`; panics with the last screen if not.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; the screen was:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn pane_title(&self, target: &str) -> String {
        self.text(&["display-message", "-p", "-t", target, "#{pane_title}"])
            .trim()
            .to_string()
    }

    /// Names of tmux paste buffers (an OSC 52 clipboard write creates one).
    pub fn buffers(&self) -> String {
        self.text(&["list-buffers", "-F", "#{buffer_name}: #{buffer_sample}"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(["kill-server"]);
    }
}
