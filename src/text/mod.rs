//! Text that comes from outside (dbt output, names, paths) on its way to a screen,
//! and commands written for a shell.

pub mod lines;
pub mod plural;
pub mod quote;
pub mod sanitize;
