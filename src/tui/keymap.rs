//! Keys to actions, and the table the help overlay is drawn from (one source, so
//! help can never disagree with what the keys do).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Detach,
    Help,
    Back,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Zoom,
    ToggleTable,
    Timeline,
    PauseWorker,
    PauseQueue,
    Cancel,
    Retry,
    RetryAllFailed,
    MoreWorkers,
    FewerWorkers,
    EditBudget,
    EditBatch,
    Split,
    MoveUp,
    MoveDown,
    Search,
    NextMatch,
    PrevMatch,
    Follow,
    Wrap,
    Mark,
    MarkVisible,
    Sort,
    NextFailed,
    PrevFailed,
    ShowCommand,
    OpenLog,
    OpenSql,
    Interrupt,
    Suspend,
}

/// The action of a key outside text input.
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    use Action::*;
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Interrupt),
            KeyCode::Char('z') => Some(Suspend),
            KeyCode::Char('f') => Some(PageDown),
            KeyCode::Char('b') => Some(PageUp),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Quit,
        KeyCode::Char('d') => Detach,
        KeyCode::Char('?') => Help,
        KeyCode::Esc => Back,
        KeyCode::Up | KeyCode::Char('k') => Up,
        KeyCode::Down | KeyCode::Char('j') => Down,
        KeyCode::Left | KeyCode::Char('h') => Left,
        KeyCode::Right | KeyCode::Char('l') => Right,
        KeyCode::PageUp => PageUp,
        KeyCode::PageDown => PageDown,
        KeyCode::Home | KeyCode::Char('g') => Top,
        KeyCode::End | KeyCode::Char('G') => Bottom,
        KeyCode::Enter => Zoom,
        KeyCode::Tab | KeyCode::BackTab => ToggleTable,
        KeyCode::Char('t') => Timeline,
        KeyCode::Char('p') => PauseWorker,
        KeyCode::Char('P') => PauseQueue,
        KeyCode::Char('c') => Cancel,
        KeyCode::Char('r') => Retry,
        KeyCode::Char('R') => RetryAllFailed,
        KeyCode::Char('+' | '=') => MoreWorkers,
        KeyCode::Char('-') => FewerWorkers,
        KeyCode::Char('b') => EditBudget,
        KeyCode::Char('e') => EditBatch,
        KeyCode::Char('s') => Split,
        KeyCode::Char('K') => MoveUp,
        KeyCode::Char('J') => MoveDown,
        KeyCode::Char('/') => Search,
        KeyCode::Char('n') => NextMatch,
        KeyCode::Char('N') => PrevMatch,
        KeyCode::Char('f') => Follow,
        KeyCode::Char('w') => Wrap,
        KeyCode::Char(' ') => Mark,
        KeyCode::Char('V') => MarkVisible,
        KeyCode::Char('o') => Sort,
        KeyCode::Char(']') => NextFailed,
        KeyCode::Char('[') => PrevFailed,
        KeyCode::Char('y') => ShowCommand,
        KeyCode::Char('v') => OpenLog,
        KeyCode::Char('E') => OpenSql,
        _ => return None,
    })
}

/// Every binding, grouped for the help overlay: (keys, what they do).
pub const HELP: &[(&str, &[(&str, &str)])] = &[
    (
        "Anywhere",
        &[
            ("q", "quit (asks while batches run: y stop, d detach)"),
            ("d", "detach: the run goes on; dbt-herd attach returns"),
            ("? / Esc", "help / back"),
            ("arrows, h j k l", "move between panes or rows"),
            ("Enter", "zoom the focused pane or selected batch"),
            ("Tab", "switch between the worker grid and the batch table"),
            ("t", "timeline: a lane per worker, a bar per attempt"),
            ("] / [", "next / previous failed batch"),
            (
                "v / E",
                "open the batch's log in $PAGER / failing SQL in $EDITOR",
            ),
            ("y", "show the command the batch's last attempt ran"),
            ("mouse", "click focuses, double click zooms, wheel scrolls"),
            ("Ctrl-C", "stop every batch and quit (twice: kill now)"),
            ("Ctrl-Z", "suspend dbt-herd (no new batch starts until fg)"),
        ],
    ),
    (
        "Batches and workers",
        &[
            ("p", "pause / resume the focused worker (SIGSTOP / SIGCONT)"),
            ("P", "pause / resume dispatch of the whole queue"),
            (
                "c",
                "cancel the focused or selected batch (asks if running)",
            ),
            ("r", "retry a failed batch; rerun one that succeeded (asks)"),
            ("R", "retry all failed batches"),
            ("+ / -", "one worker more / less"),
            ("b", "edit the connection budget"),
            ("e", "edit a pending or failed batch's selector and vars"),
            ("s", "split a pending or failed batch into one per model"),
            (
                "K / J",
                "move the selected pending batch up / down the queue",
            ),
        ],
    ),
    (
        "Batch table",
        &[
            (
                "/",
                "filter rows by id, status or error (/fail); Esc clears",
            ),
            ("o", "sort: queue order, id, duration, status"),
            ("Space / V", "mark a row / every row shown (again: unmark)"),
            (
                "r c e s K J",
                "act on every marked row when rows are marked",
            ),
        ],
    ),
    (
        "Zoomed log",
        &[
            (
                "PgUp PgDn j k g G",
                "scroll; top; bottom (G follows new lines)",
            ),
            (
                "f   / then n N",
                "follow on / off; search, next / previous match",
            ),
            (
                "w   ← →",
                "wrap long lines on / off; scroll sideways when off",
            ),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn the_documented_keys_map_to_their_actions() {
        assert_eq!(action_for(&key('q')), Some(Action::Quit));
        assert_eq!(action_for(&key('p')), Some(Action::PauseWorker));
        assert_eq!(action_for(&key('P')), Some(Action::PauseQueue));
        assert_eq!(action_for(&key('R')), Some(Action::RetryAllFailed));
        assert_eq!(action_for(&key('K')), Some(Action::MoveUp));
        assert_eq!(action_for(&key('J')), Some(Action::MoveDown));
        assert_eq!(action_for(&key('j')), Some(Action::Down));
        assert_eq!(
            action_for(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Interrupt)
        );
        assert_eq!(action_for(&key('x')), None);
    }

    #[test]
    fn help_lists_every_key_of_the_spec() {
        let keys: Vec<&str> = HELP
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(k, _)| *k))
            .collect();
        for k in [
            "q",
            "p",
            "P",
            "c",
            "r",
            "R",
            "+ / -",
            "b",
            "e",
            "s",
            "K / J",
            "Tab",
            "Enter",
            "/",
            "o",
            "Space / V",
            "] / [",
            "y",
            "v / E",
        ] {
            assert!(keys.contains(&k), "help misses {k}");
        }
    }
}
