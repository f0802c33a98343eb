//! The terminal UI: the interactive face on the engine. It renders engine events
//! and turns keys into engine commands; it spawns nothing and touches no files.

pub(crate) mod app;
pub(crate) mod keymap;
pub(crate) mod layout;
pub(crate) mod logbuf;
mod terminal;
pub(crate) mod theme;
pub(crate) mod view;

pub(crate) use terminal::{TuiOptions, run};
