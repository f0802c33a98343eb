//! An attempt's past: what the journal records of it (kind, worker, times,
//! outcome, command), and its command as a line a person can run by hand.

use std::collections::BTreeMap;

use crate::dbt::argv::{AttemptKind, Invocation};
use crate::engine::messages::{AttemptOutcome, AttemptView, HistoryKind};
use crate::text::quote::command_line;

/// What an attempt runs: its argv (program first) and the variables dbt-herd
/// adds to the environment the process inherits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AttemptCommand {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl AttemptCommand {
    pub fn of(inv: &Invocation) -> Self {
        Self {
            argv: std::iter::once(inv.program.display().to_string())
                .chain(inv.args.iter().cloned())
                .collect(),
            // A later value for a name wins, as it does in the child's environment.
            // Secrets show as a mask: this goes to the journal and the faces.
            env: inv
                .env
                .iter()
                .map(|(k, v)| (k.clone(), crate::secret::shown(k, v).to_string()))
                .collect(),
        }
    }

    /// The command as one line for a POSIX shell.
    pub fn line(&self) -> String {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        command_line(&env, &self.argv)
    }
}

/// One attempt as the journal records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PastAttempt {
    pub number: u32,
    pub kind: AttemptKind,
    pub worker: usize,
    /// Unix seconds, from the record's time.
    pub started_at: f64,
    /// `None` until its end is on record.
    pub finished_at: Option<f64>,
    pub outcome: Option<AttemptOutcome>,
    /// `None` in journals older than the command record.
    pub command: Option<AttemptCommand>,
    /// The fingerprint of what the batch ran then.
    pub fp: Option<String>,
    /// A process was started for it (its output may hold committed nodes).
    pub spawned: bool,
}

impl PastAttempt {
    pub fn view(&self) -> AttemptView {
        AttemptView {
            number: self.number,
            kind: HistoryKind::of(self.kind, self.number),
            worker: self.worker,
            started_at: self.started_at,
            duration_s: self.finished_at.map(|f| (f - self.started_at).max(0.0)),
            outcome: self.outcome.unwrap_or(AttemptOutcome::Unfinished),
            failure_class: None,
            command: self.command.as_ref().map(AttemptCommand::line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_the_program_its_args_and_the_added_env() {
        let inv = Invocation {
            program: "/venv/bin/dbt".into(),
            args: vec![
                "retry".into(),
                "--target-path".into(),
                "/s/b 1/target".into(),
            ],
            env: vec![
                ("DB".into(), "first".into()),
                ("HERD_BATCH".into(), "b 1".into()),
                ("DB".into(), "last".into()),
            ],
        };
        let c = AttemptCommand::of(&inv);
        assert_eq!(c.argv[0], "/venv/bin/dbt");
        assert_eq!(c.env["DB"], "last", "the value the child saw");
        assert_eq!(
            c.line(),
            "DB=last HERD_BATCH='b 1' /venv/bin/dbt retry --target-path '/s/b 1/target'"
        );
    }

    #[test]
    fn an_attempt_without_its_end_on_record_is_unfinished() {
        let mut p = PastAttempt {
            number: 2,
            kind: AttemptKind::Full,
            worker: 3,
            started_at: 100.0,
            finished_at: None,
            outcome: None,
            command: None,
            fp: None,
            spawned: false,
        };
        let v = p.view();
        assert_eq!(
            (v.kind, v.outcome, v.duration_s, v.command),
            (HistoryKind::Rerun, AttemptOutcome::Unfinished, None, None)
        );
        p.finished_at = Some(104.5);
        p.outcome = Some(AttemptOutcome::Failed);
        assert_eq!(p.view().duration_s, Some(4.5));
    }
}
