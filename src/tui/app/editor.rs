//! The one-line editors (budget, a batch's selector and vars, search) and what
//! submitting them does.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, Effect, Overlay};
use crate::dbt::events::Level;
use crate::engine::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Budget,
    EditBatch(usize),
    /// Several marked batches; a field left as it was prefilled keeps each
    /// batch's own value.
    EditMarked {
        batches: Vec<usize>,
        select: String,
        vars: String,
    },
    Search,
    /// The table's filter, applied as it is typed.
    Filter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Cursor position in chars.
    pub cursor: usize,
}

impl Field {
    pub(super) fn new(label: &'static str, value: String) -> Self {
        let cursor = value.chars().count();
        Self {
            label,
            value,
            cursor,
        }
    }

    pub(super) fn byte_at(&self, char_pos: usize) -> usize {
        self.value
            .char_indices()
            .nth(char_pos)
            .map_or(self.value.len(), |(i, _)| i)
    }

    pub(super) fn edit(&mut self, key: &KeyEvent) {
        let len = self.value.chars().count();
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                let at = self.byte_at(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Char('u') => {
                self.value.clear();
                self.cursor = 0;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.value.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => {}
        }
    }
}

/// A one-line editor with one or more fields (Tab moves between them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub purpose: Purpose,
    pub fields: Vec<Field>,
    pub active: usize,
}

impl App {
    pub(super) fn on_input_key(&mut self, mut input: Input, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                if input.purpose == Purpose::Filter {
                    self.table.filter = None;
                }
                Vec::new()
            }
            KeyCode::Enter => self.submit(input),
            KeyCode::Tab | KeyCode::BackTab => {
                input.active = (input.active + 1) % input.fields.len().max(1);
                self.overlay = Overlay::Input(input);
                Vec::new()
            }
            _ => {
                if let Some(f) = input.fields.get_mut(input.active) {
                    f.edit(&key);
                }
                if input.purpose == Purpose::Filter {
                    self.set_filter(input.fields.first().map_or("", |f| f.value.as_str()));
                }
                self.overlay = Overlay::Input(input);
                Vec::new()
            }
        }
    }

    pub(super) fn submit(&mut self, input: Input) -> Vec<Effect> {
        let value = |i: usize| input.fields.get(i).map_or("", |f| f.value.trim());
        match input.purpose {
            Purpose::Budget => match value(0).parse::<u32>() {
                Ok(n) if n >= 1 => vec![Effect::Send(Command::SetBudget(n))],
                Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                    self.say(
                        Level::Error,
                        format!(
                            "invalid budget '{}': too large (at most {} connections)",
                            value(0),
                            u32::MAX
                        ),
                    );
                    Vec::new()
                }
                _ => {
                    self.say(
                        Level::Error,
                        format!(
                            "invalid budget '{}': expected a whole number of connections, at least 1",
                            value(0)
                        ),
                    );
                    Vec::new()
                }
            },
            Purpose::EditBatch(batch) => {
                let vars = value(1).to_string();
                if let Err(e) = crate::plan::parse_vars(&vars) {
                    self.say(Level::Error, e.0);
                    // Keep the text so it can be fixed.
                    self.overlay = Overlay::Input(input);
                    return Vec::new();
                }
                let select = Some(value(0).to_string()).filter(|s| !s.is_empty());
                vec![Effect::Send(Command::EditBatch {
                    batch,
                    select,
                    vars,
                })]
            }
            Purpose::EditMarked {
                ref batches,
                ref select,
                ref vars,
            } => {
                let (new_select, new_vars) = (value(0), value(1));
                let vars_changed = new_vars != vars.trim();
                if vars_changed && let Err(e) = crate::plan::parse_vars(new_vars) {
                    self.say(Level::Error, e.0);
                    self.overlay = Overlay::Input(input.clone());
                    return Vec::new();
                }
                let select_changed = new_select != select.trim();
                if !vars_changed && !select_changed {
                    self.say(Level::Info, "nothing changed");
                    return Vec::new();
                }
                let commands: Vec<Effect> = batches
                    .iter()
                    .filter_map(|&b| {
                        let v = self.batches.get(b)?;
                        let select = if select_changed {
                            Some(new_select.to_string()).filter(|s| !s.is_empty())
                        } else {
                            v.select.clone()
                        };
                        let vars = if vars_changed {
                            new_vars.to_string()
                        } else {
                            v.vars.clone()
                        };
                        Some(Effect::Send(Command::EditBatch {
                            batch: b,
                            select,
                            vars,
                        }))
                    })
                    .collect();
                self.table.marks.clear();
                self.say(
                    Level::Info,
                    format!(
                        "edited {}; failed ones run again in full",
                        super::plural(commands.len(), "batch", "batches")
                    ),
                );
                commands
            }
            Purpose::Filter => {
                self.set_filter(value(0));
                let shown = self.rows().len();
                if self.table.filter.is_some() {
                    self.say(
                        Level::Info,
                        format!(
                            "{} match; Esc clears the filter",
                            super::plural(shown, "row", "rows")
                        ),
                    );
                }
                Vec::new()
            }
            Purpose::Search => {
                let q = value(0).to_lowercase();
                if let Some(z) = self.zoom.as_mut() {
                    z.query = Some(q).filter(|q| !q.is_empty());
                    z.matched = None;
                }
                self.jump_to_match(false);
                Vec::new()
            }
        }
    }
}

impl App {
    /// Sets the table's filter (empty clears it) and keeps the selection on a
    /// row that shows.
    pub(super) fn set_filter(&mut self, text: &str) {
        let text = text.trim().to_lowercase();
        self.table.filter = Some(text).filter(|t| !t.is_empty());
        if let Some(b) = self.selected_row() {
            self.selected = b;
        }
    }
}
