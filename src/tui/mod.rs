//! The terminal UI (in progress).
