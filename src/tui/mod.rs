//! The terminal UI: the interactive face on the engine. It renders engine events
//! and turns keys and clicks into engine commands. It runs no dbt and writes no
//! file; the only programs it starts are the user's own pager and editor, when
//! asked to (`external`).

pub(crate) mod app;
pub(crate) mod attempts;
mod external;
pub(crate) mod failure;
pub(crate) mod keymap;
pub(crate) mod layout;
pub(crate) mod logbuf;
mod terminal;
pub(crate) mod theme;
pub(crate) mod view;

pub(crate) use terminal::{TuiOptions, attach};
