//! Looking outside the TUI: a batch's command to copy, its raw log in the
//! user's pager, its failing SQL in the user's editor. The app only names the
//! files (from the state dir's layout); the terminal layer hands the screen
//! over and takes it back.

use super::{App, Effect, Overlay};
use crate::dbt::events::Level;
use crate::state_dir::StateDir;

impl App {
    /// `y`: the focused batch's last attempt's command (← → for the others).
    pub(super) fn show_command(&mut self) {
        let Some(b) = self.target_batch() else {
            self.say(Level::Info, "no batch selected");
            return;
        };
        match self.batches.get(b).map_or(0, |v| v.history.len()) {
            0 => {
                let label = self.label(b);
                self.say(Level::Info, format!("{label} has not run yet"));
            }
            n => {
                self.overlay = Overlay::Command {
                    batch: b,
                    attempt: n - 1,
                };
            }
        }
    }

    /// `v`: every attempt's raw output of the focused batch, oldest first.
    pub(super) fn open_log(&mut self) -> Vec<Effect> {
        let (Some(b), Some(info)) = (self.target_batch(), self.info.as_ref()) else {
            self.say(Level::Info, "no batch selected");
            return Vec::new();
        };
        let v = &self.batches[b];
        if v.attempts == 0 {
            let label = self.label(b);
            self.say(Level::Info, format!("{label} has not run yet: no log"));
            return Vec::new();
        }
        let state = StateDir::new(info.state_dir.clone().into());
        let files = (1..=v.attempts)
            .flat_map(|n| ["stdout", "stderr"].map(|stream| state.attempt_output(&v.id, n, stream)))
            .collect();
        vec![Effect::Page(files)]
    }

    /// `E`: the compiled SQL of the focused failed batch's first failing node.
    pub(super) fn open_sql(&mut self) -> Vec<Effect> {
        let Some(b) = self.target_batch() else {
            self.say(Level::Info, "no batch selected");
            return Vec::new();
        };
        let path = self.batches[b]
            .failing
            .iter()
            .find_map(|n| n.compiled_path.clone());
        if let Some(p) = path {
            return vec![Effect::Edit(p.into())];
        }
        let label = self.label(b);
        self.say(
            Level::Info,
            format!("{label} has no failing node with compiled SQL"),
        );
        Vec::new()
    }
}
