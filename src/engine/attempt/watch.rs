//! Watching a target dir for a complete `run_results.json`. dbt writes the file in
//! place, in several writes: only a close after writing means it is complete
//! (reading on modify sees it half written; reading on open triggers itself).

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub(crate) struct ResultsWatch {
    // Kept alive for as long as we want events.
    _watcher: Option<RecommendedWatcher>,
    closed: mpsc::Receiver<()>,
}

impl ResultsWatch {
    /// Watches `target_dir` for `run_results.json` being closed after a write. If
    /// watching is impossible (inotify limits), no event ever comes, and the read
    /// after the child exits still gets the results.
    pub fn start(target_dir: &Path) -> Self {
        // One pending notice is enough: the reader reads the latest file anyway.
        let (tx, closed) = mpsc::channel(1);
        let file: PathBuf = target_dir.join("run_results.json");
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && matches!(
                    ev.kind,
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                )
                && ev.paths.iter().any(|p| p == &file)
            {
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(target_dir, RecursiveMode::NonRecursive).map(|()| w))
        .ok();
        Self {
            _watcher: watcher,
            closed,
        }
    }

    /// Waits for the next complete write; pending forever if there can be none.
    pub async fn written(&mut self) {
        if self.closed.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
