//! A child's output on its way to the engine: every byte copied to the attempt's
//! log file, then cut into bounded lines, parsed, and reported. The pipe is always
//! drained, so a slow engine or face never blocks dbt: when the report channel is
//! full, lines that are only for display are counted instead of queued, and the
//! engine hears how many were left out. Lines that move the batch forward (node
//! starts and ends, errors, results) always get through.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::dbt::events;
use crate::engine::protocol::{AttemptKey, AttemptReport, OutputLine};
use crate::text::lines::LineSplitter;

/// A line longer than this is cut (the full bytes are still in the attempt's log file).
pub(crate) const MAX_LINE_BYTES: usize = 256 * 1024;

pub(crate) struct Pump {
    pub key: AttemptKey,
    pub stderr: bool,
    pub reports: mpsc::Sender<AttemptReport>,
    /// Set from the first event that names dbt's invocation, for reading results.
    pub invocation: Arc<OnceLock<String>>,
}

/// The engine has gone: nothing more to report.
pub(crate) struct EngineGone;

impl Pump {
    /// Copies `src` to `file` and reports its lines until the pipe closes.
    pub async fn run(self, mut src: impl AsyncRead + Unpin, file: &Path) {
        let mut lines = Lines::new(self.key, self.reports, self.invocation);
        // Plain blocking writes: a page-cache write costs microseconds, less than
        // a hop to a blocking thread would.
        let mut out = std::fs::File::create(file).ok();
        let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(f) = out.as_mut()
                && f.write_all(&buf[..n]).is_err()
            {
                // A full disk must not stop us from draining the pipe (a blocked
                // pipe would block dbt); keep streaming without the copy.
                out = None;
            }
            for line in splitter.push(&buf[..n]) {
                if lines.report(self.stderr, line.text()).await.is_err() {
                    return;
                }
            }
        }
        if let Some(line) = splitter.finish()
            && lines.report(self.stderr, line.text()).await.is_err()
        {
            return;
        }
        let _ = lines.flush().await;
    }
}

/// Reports one attempt's output lines to the engine. Lines that move the batch
/// forward are always sent (waiting for room); the others are counted instead
/// when the channel is full, and the count goes first when there is room again.
pub(crate) struct Lines {
    key: AttemptKey,
    reports: mpsc::Sender<AttemptReport>,
    invocation: Arc<OnceLock<String>>,
    shed: u64,
}

impl Lines {
    pub fn new(
        key: AttemptKey,
        reports: mpsc::Sender<AttemptReport>,
        invocation: Arc<OnceLock<String>>,
    ) -> Self {
        Self {
            key,
            reports,
            invocation,
            shed: 0,
        }
    }

    /// Parses `text` (dbt's JSON events come on stdout) and reports it.
    pub async fn report(&mut self, stderr: bool, text: String) -> Result<(), EngineGone> {
        let event = if stderr {
            None
        } else {
            events::parse_line(&text)
        };
        if let Some(inv) = event.as_ref().and_then(|e| e.invocation_id.as_ref())
            && self.invocation.get().is_none()
        {
            let _ = self.invocation.set(inv.clone());
        }
        let line = OutputLine {
            stderr,
            text,
            event,
        };
        let essential = line.is_essential();
        let msg = AttemptReport::Line {
            key: self.key,
            line,
        };
        if essential {
            self.flush().await?;
            return self.send(msg).await;
        }
        if self.shed > 0 {
            match self.reports.try_send(AttemptReport::Shed {
                key: self.key,
                lines: self.shed,
            }) {
                Ok(()) => self.shed = 0,
                Err(TrySendError::Full(_)) => {
                    self.shed += 1;
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(EngineGone),
            }
        }
        match self.reports.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shed += 1;
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(EngineGone),
        }
    }

    /// Says how many lines were left out, if any.
    pub async fn flush(&mut self) -> Result<(), EngineGone> {
        if self.shed == 0 {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.shed);
        self.send(AttemptReport::Shed {
            key: self.key,
            lines,
        })
        .await
    }

    async fn send(&self, msg: AttemptReport) -> Result<(), EngineGone> {
        self.reports.send(msg).await.map_err(|_| EngineGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AttemptKey {
        AttemptKey {
            batch: 0,
            attempt: 1,
        }
    }

    fn event(name: &str, level: &str) -> String {
        format!(
            r#"{{"info":{{"name":"{name}","level":"{level}","msg":"m","invocation_id":"inv-1"}},"data":{{}}}}"#
        )
    }

    /// A full channel sheds display lines into a count, keeps every essential
    /// line, and the log file still gets every byte.
    #[tokio::test]
    async fn a_full_channel_sheds_display_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.log");
        let (tx, mut rx) = mpsc::channel(4);
        let mut input = String::new();
        for i in 0..100 {
            input.push_str(&event("JinjaLogInfo", "info"));
            input.push('\n');
            if i % 10 == 0 {
                input.push_str(&event("RunResultError", "error"));
                input.push('\n');
            }
        }
        let invocation = Arc::new(OnceLock::new());
        let pump = Pump {
            key: key(),
            stderr: false,
            reports: tx,
            invocation: invocation.clone(),
        };
        let task = tokio::spawn({
            let file = file.clone();
            let bytes = input.clone().into_bytes();
            async move { pump.run(&bytes[..], &file).await }
        });
        // Nobody reads until the pump is blocked on an essential line.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (mut display, mut errors, mut shed) = (0u64, 0u64, 0u64);
        while let Some(m) = rx.recv().await {
            match m {
                AttemptReport::Line { line, .. } if line.is_essential() => errors += 1,
                AttemptReport::Line { .. } => display += 1,
                AttemptReport::Shed { lines, .. } => shed += lines,
                other => panic!("unexpected {other:?}"),
            }
        }
        task.await.unwrap();
        assert_eq!(errors, 10, "no essential line is shed");
        assert!(shed > 0, "the full channel shed display lines");
        assert_eq!(
            display + shed,
            100,
            "every display line is shown or counted"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), input);
        assert_eq!(invocation.get().map(String::as_str), Some("inv-1"));
    }
}
