//! `<state dir>/connections.jsonl`: the connections over time, one line each
//! time they change — `reserved` (threads of running attempts, what the budget
//! counts) and `active` (nodes executing, per dbt's events). The run report
//! draws it. Append-only and buffered: a lost tail costs a few points of a chart.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

pub(crate) const FILE: &str = "connections.jsonl";

pub(crate) struct ConnectionLog {
    out: Option<BufWriter<File>>,
    last: Option<(u32, u32)>,
}

impl ConnectionLog {
    /// Appends to the state dir's log; without one (it cannot be opened) the
    /// run goes on with no chart.
    pub fn open(state_dir: &Path) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join(FILE))
            .ok()
            .map(BufWriter::new);
        Self { out, last: None }
    }

    /// Records the connections at `t` (Unix seconds) if they changed.
    pub fn note(&mut self, t: f64, reserved: u32, active: u32) {
        if self.last == Some((reserved, active)) {
            return;
        }
        self.last = Some((reserved, active));
        if let Some(out) = &mut self.out
            && writeln!(
                out,
                r#"{{"t":{t:.3},"reserved":{reserved},"active":{active}}}"#
            )
            .is_err()
        {
            self.out = None;
        }
    }

    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out
            && out.flush().is_err()
        {
            self.out = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_written_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ConnectionLog::open(dir.path());
        log.note(1.0, 2, 0);
        log.note(1.5, 2, 0);
        log.note(2.0, 2, 1);
        log.note(3.0, 0, 0);
        log.flush();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(
            text,
            "{\"t\":1.000,\"reserved\":2,\"active\":0}\n{\"t\":2.000,\"reserved\":2,\"active\":1}\n{\"t\":3.000,\"reserved\":0,\"active\":0}\n"
        );
    }
}
