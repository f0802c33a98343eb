//! `dbt ls` of one batch's models, for a split: run in the background, in its own
//! process group like every other child, answered through a channel.

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use crate::dbt::argv::{self, Invocation, ListedModel, ListedNode};
use crate::engine::process;
use crate::engine::protocol::AttemptKey;

/// The models of a batch, or why they could not be listed.
#[derive(Debug)]
pub(crate) struct Listed {
    pub batch: usize,
    pub models: Result<Vec<ListedModel>, String>,
}

pub(crate) fn spawn(batch: usize, inv: Invocation, answer: mpsc::Sender<Listed>) {
    tokio::spawn(async move {
        let models = list(&inv).await;
        let _ = answer.send(Listed { batch, models }).await;
    });
}

/// Every node an attempt's batch selects, or why they could not be listed.
#[derive(Debug)]
pub(crate) struct ListedNodes {
    pub key: AttemptKey,
    pub nodes: Result<Vec<ListedNode>, String>,
}

pub(crate) fn spawn_nodes(key: AttemptKey, inv: Invocation, answer: mpsc::Sender<ListedNodes>) {
    tokio::spawn(async move {
        let nodes = run_ls(&inv).await.map(|out| argv::parse_listed_nodes(&out));
        let _ = answer.send(ListedNodes { key, nodes }).await;
    });
}

async fn list(inv: &Invocation) -> Result<Vec<ListedModel>, String> {
    run_ls(inv).await.map(|out| argv::parse_model_list(&out))
}

/// Runs a `dbt ls` to the end: its stdout, or its last line when it failed.
async fn run_ls(inv: &Invocation) -> Result<String, String> {
    let g = process::spawn_in_group(inv).map_err(|e| e.to_string())?;
    let pgid = g.pgid;
    let out = g.child.wait_with_output().await;
    // dbt is done; anything it left in its group goes with it.
    process::signal_group(pgid, Signal::SIGKILL);
    process::unregister(pgid);
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        return Err(text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
