//! A stable fingerprint of what a batch runs, so that a resume can tell whether
//! it changed (and must run again) since the journal recorded it.

use crate::config::RunSettings;
use crate::plan::Batch;

pub(crate) fn fingerprint(s: &RunSettings, b: &Batch) -> String {
    let mut what = serde_json::json!({
        "command": s.command.to_string(),
        "select": b.select,
        "exclude": s.exclude,
        "selector": s.selector,
        "vars": b.vars,
        "project": s.project_dir,
        "target": s.target,
        "extra": s.extra_args,
    });
    // Only when a shared-warehouse plan set them, so that the fingerprints of
    // runs recorded before these existed stay the same.
    if !b.exclude.is_empty() {
        what["batch_exclude"] = serde_json::json!(b.exclude);
    }
    if !b.own.is_empty() {
        what["own"] = serde_json::json!(b.own);
    }
    if let Some(how) = &b.indirect_selection {
        what["indirect_selection"] = serde_json::json!(how);
    }
    if s.plan.window_as == crate::plan::WindowAs::EventTime {
        what["event_time"] = serde_json::json!(b.window.map(|w| w.to_string()));
    }
    let text = what.to_string();
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
