//! Text that comes from outside (dbt output, names, paths) on its way to a screen.

pub mod lines;
pub mod plural;
pub mod sanitize;
