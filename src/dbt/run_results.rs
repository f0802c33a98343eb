//! `run_results.json`: parsed, checked against the attempt that should have
//! written it, and merged across attempts.
//!
//! dbt writes the file once, in place, at the end of an invocation, and `dbt retry`
//! rewrites it with only the retried nodes. So a batch's truth is the merge of every
//! attempt's file, the later attempt winning for each node.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunResults {
    pub metadata: Metadata,
    #[serde(default)]
    pub results: Vec<NodeResult>,
    #[serde(default)]
    pub elapsed_time: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metadata {
    pub invocation_id: String,
    #[serde(default)]
    pub dbt_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeResult {
    pub unique_id: String,
    pub status: String,
    #[serde(default)]
    pub execution_time: f64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub failures: Option<i64>,
    #[serde(default)]
    pub relation_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// No file (dbt was killed, or failed before running anything).
    Missing,
    /// The JSON ends early: dbt is still writing it. Read again later.
    Incomplete,
    /// Not run_results JSON. Never counted as success.
    Corrupt(String),
    /// Written by another invocation (an earlier attempt in a reused target dir).
    Stale { found: String },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("no run_results.json"),
            ReadError::Incomplete => f.write_str("run_results.json is still being written"),
            ReadError::Corrupt(e) => write!(f, "run_results.json is corrupt: {e}"),
            ReadError::Stale { found } => {
                write!(f, "run_results.json is from another invocation ({found})")
            }
        }
    }
}

pub fn parse(bytes: &[u8]) -> Result<RunResults, ReadError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => ReadError::Incomplete,
        _ => ReadError::Corrupt(e.to_string()),
    })
}

/// Reads the file and accepts it only if `expected_invocation` wrote it (when known).
pub fn read(path: &Path, expected_invocation: Option<&str>) -> Result<RunResults, ReadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Corrupt(e.to_string())),
    };
    if bytes.is_empty() {
        // Truncated by `open(path, "w")` and not yet written.
        return Err(ReadError::Incomplete);
    }
    let rr = parse(&bytes)?;
    match expected_invocation {
        Some(id) if id != rr.metadata.invocation_id => Err(ReadError::Stale {
            found: rr.metadata.invocation_id,
        }),
        _ => Ok(rr),
    }
}

/// Node counts by status, as in summary.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    pub success: u32,
    pub error: u32,
    pub skipped: u32,
    pub pass: u32,
    pub fail: u32,
    pub warn: u32,
}

impl NodeCounts {
    pub fn add(&mut self, status: &str) {
        match status {
            "success" => self.success += 1,
            "error" | "runtime error" => self.error += 1,
            "skipped" => self.skipped += 1,
            "pass" => self.pass += 1,
            "fail" => self.fail += 1,
            "warn" => self.warn += 1,
            _ => {}
        }
    }

    pub fn total(&self) -> u32 {
        self.success + self.error + self.skipped + self.pass + self.fail + self.warn
    }

    /// Anything that `dbt retry` would run again.
    pub fn has_failures(&self) -> bool {
        self.error + self.fail + self.skipped > 0
    }
}

/// The latest known outcome of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub status: String,
    pub message: Option<String>,
    pub execution_time: f64,
    pub attempt: u32,
    pub relation_name: Option<String>,
}

/// Every node's latest outcome across a batch's attempts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergedResults {
    pub nodes: BTreeMap<String, NodeOutcome>,
}

impl MergedResults {
    pub fn merge(&mut self, rr: &RunResults, attempt: u32) {
        for r in &rr.results {
            self.nodes.insert(
                r.unique_id.clone(),
                NodeOutcome {
                    status: r.status.clone(),
                    message: r.message.clone(),
                    execution_time: r.execution_time,
                    attempt,
                    relation_name: r.relation_name.clone(),
                },
            );
        }
    }

    /// A node's outcome as an event of `attempt` told it (before, or instead
    /// of, that attempt's run_results.json).
    pub fn record(&mut self, unique_id: &str, status: &str, attempt: u32, execution_time: f64) {
        let relation_name = self
            .nodes
            .get(unique_id)
            .and_then(|n| n.relation_name.clone());
        self.nodes.insert(
            unique_id.to_string(),
            NodeOutcome {
                status: status.to_string(),
                message: None,
                execution_time,
                attempt,
                relation_name,
            },
        );
    }

    /// Nodes whose latest outcome is for good (committed, passed) in attempt
    /// `since` or later: what the next full attempt leaves out.
    pub fn committed_since(&self, since: u32) -> impl Iterator<Item = (&String, &NodeOutcome)> {
        self.nodes
            .iter()
            .filter(move |(_, n)| n.attempt >= since && crate::dbt::events::is_committed(&n.status))
    }

    pub fn counts(&self) -> NodeCounts {
        let mut c = NodeCounts::default();
        for n in self.nodes.values() {
            c.add(&n.status);
        }
        c
    }

    /// Nodes whose latest outcome is error or fail, in id order.
    pub fn failing(&self) -> impl Iterator<Item = (&String, &NodeOutcome)> {
        self.nodes
            .iter()
            .filter(|(_, n)| matches!(n.status.as_str(), "error" | "fail" | "runtime error"))
    }

    /// The first failing node's message, for a one-line summary.
    pub fn first_error(&self) -> Option<String> {
        self.failing().next().map(|(id, n)| match &n.message {
            Some(m) if !m.trim().is_empty() => format!("{id}: {}", m.trim()),
            _ => format!("{id}: {}", n.status),
        })
    }

    /// Whether the first failing node's message says more than its status (a
    /// microbatch model's says only "ERROR"; the reason is in the log).
    pub fn first_error_is_bare(&self) -> bool {
        self.failing().next().is_some_and(|(_, n)| {
            n.message
                .as_deref()
                .is_none_or(|m| m.trim().eq_ignore_ascii_case(&n.status))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(inv: &str, results: &[(&str, &str)]) -> RunResults {
        RunResults {
            metadata: Metadata {
                invocation_id: inv.into(),
                dbt_version: None,
            },
            results: results
                .iter()
                .map(|(id, st)| NodeResult {
                    unique_id: id.to_string(),
                    status: st.to_string(),
                    execution_time: 0.1,
                    message: Some(format!("{st} msg")),
                    failures: None,
                    relation_name: None,
                })
                .collect(),
            elapsed_time: 1.0,
        }
    }

    #[test]
    fn truncated_json_is_incomplete_not_corrupt() {
        assert_eq!(
            parse(br#"{"metadata": {"invocation_id": "a"}, "resu"#),
            Err(ReadError::Incomplete)
        );
        assert!(matches!(parse(b"]]"), Err(ReadError::Corrupt(_))));
    }

    #[test]
    fn stale_invocation_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run_results.json");
        assert_eq!(read(&p, Some("x")), Err(ReadError::Missing));
        std::fs::write(&p, "").unwrap();
        assert_eq!(read(&p, Some("x")), Err(ReadError::Incomplete));
        std::fs::write(
            &p,
            r#"{"metadata": {"invocation_id": "old"}, "results": []}"#,
        )
        .unwrap();
        assert_eq!(
            read(&p, Some("new")),
            Err(ReadError::Stale {
                found: "old".into()
            })
        );
        assert!(read(&p, Some("old")).is_ok());
        assert!(read(&p, None).is_ok());
    }

    #[test]
    fn retry_results_override_earlier_attempts() {
        let mut m = MergedResults::default();
        m.merge(
            &rr(
                "a",
                &[
                    ("model.a", "success"),
                    ("model.b", "error"),
                    ("model.c", "skipped"),
                    ("test.t", "pass"),
                ],
            ),
            1,
        );
        let c = m.counts();
        assert_eq!((c.success, c.error, c.skipped, c.pass), (1, 1, 1, 1));
        assert!(c.has_failures());
        assert_eq!(m.first_error().unwrap(), "model.b: error msg");
        // dbt retry rewrites the file with only the retried nodes.
        m.merge(
            &rr("b", &[("model.b", "success"), ("model.c", "success")]),
            2,
        );
        let c = m.counts();
        assert_eq!((c.success, c.error, c.skipped, c.pass), (3, 0, 0, 1));
        assert!(!c.has_failures());
        assert_eq!(m.nodes["model.b"].attempt, 2);
        assert_eq!(m.nodes["model.a"].attempt, 1);
        assert_eq!(m.first_error(), None);
    }
}

/// Against run_results.json files written by real dbt 1.11 (`tests/fixtures/run_results/`).
#[cfg(test)]
mod captured {
    use super::*;

    fn load(name: &str) -> RunResults {
        let path = format!(
            "{}/tests/fixtures/run_results/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn failure_then_dbt_retry_merge_to_a_clean_batch() {
        let failed = load("failure.json");
        let retried = load("retry_after_fix.json");
        assert_ne!(
            failed.metadata.invocation_id,
            retried.metadata.invocation_id
        );
        let mut m = MergedResults::default();
        m.merge(&failed, 1);
        let c = m.counts();
        assert_eq!((c.success, c.error, c.skipped, c.pass), (12, 1, 8, 25));
        assert!(m.first_error().unwrap().contains("have not landed"));
        // dbt retry reran only the 9 failed and skipped nodes.
        assert_eq!(retried.results.len(), 9);
        m.merge(&retried, 2);
        let c = m.counts();
        assert_eq!((c.success, c.error, c.skipped, c.pass), (14, 0, 0, 32));
        assert_eq!(c, {
            let mut ok = MergedResults::default();
            ok.merge(&load("success.json"), 1);
            ok.counts()
        });
    }

    #[test]
    fn truncated_real_file_is_incomplete() {
        let path = format!(
            "{}/tests/fixtures/run_results/success.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        for cut in [1, bytes.len() / 3, bytes.len() - 2] {
            assert_eq!(
                parse(&bytes[..cut]),
                Err(ReadError::Incomplete),
                "cut at {cut}"
            );
        }
    }
}
