//! The files of a project tree, for what reads it whole (the vars its YAML
//! mentions, the signature a stored resolution is checked against).

use std::path::{Path, PathBuf};

/// Every file under `dir`, hidden directories aside and those `skip` names
/// (called with the directory's path and its name), in sorted order.
pub(crate) fn files(dir: &Path, skip: impl Fn(&Path, &str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                if !name.starts_with('.') && !skip(&p, &name) {
                    stack.push(p);
                }
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
