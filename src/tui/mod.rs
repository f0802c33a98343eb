//! The terminal UI: the interactive face on the engine. It renders engine events
//! and turns keys into engine commands; it spawns nothing and touches no files.

pub mod app;
pub mod keymap;
pub mod layout;
pub mod logbuf;
mod terminal;
pub mod theme;
pub mod view;

pub use terminal::{TuiOptions, run};
