//! Once a second: machine CPU and memory, and CPU/RSS of each running batch's
//! process group. It runs on its own thread so that reading /proc never stalls
//! the engine loop, and it reports through a channel of its own.

use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::{mpsc, watch};

use crate::engine::messages::{BatchResources, Resources};
use crate::procfs;

/// (batch index, process group id) of every live attempt.
pub(crate) type LiveGroups = Vec<(usize, i32)>;

/// Starts the sampler thread. A sample the engine has not taken yet is replaced,
/// never queued: only the latest one matters.
pub(crate) fn spawn(
    groups: watch::Receiver<LiveGroups>,
    to_engine: mpsc::Sender<Resources>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("dbt-herd-sampler".into())
        .spawn(move || sample_loop(&groups, &to_engine))
        .map(drop)
}

fn sample_loop(groups: &watch::Receiver<LiveGroups>, to_engine: &mpsc::Sender<Resources>) {
    let mut sys = System::new();
    let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if to_engine.is_closed() {
            return; // the engine has ended
        }
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let live = groups.borrow().clone();
        let members: Vec<(usize, Vec<Pid>)> = live
            .iter()
            .map(|&(b, pgid)| {
                let pids = procfs::group_members(pgid)
                    .into_iter()
                    .map(|p| Pid::from_u32(p.unsigned_abs()))
                    .collect();
                (b, pids)
            })
            .collect();
        let all: Vec<Pid> = members
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        if !all.is_empty() {
            sys.refresh_processes_specifics(ProcessesToUpdate::Some(&all), true, kind);
        }
        let batches = members
            .into_iter()
            .map(|(batch, pids)| {
                let (cpu, rss) = pids
                    .iter()
                    .filter_map(|p| sys.process(*p))
                    .fold((0.0f32, 0u64), |(c, m), p| {
                        (c + p.cpu_usage(), m + p.memory())
                    });
                BatchResources {
                    batch,
                    cpu_percent: cpu,
                    rss_bytes: rss,
                }
            })
            .collect();
        let sample = Resources {
            cpu_percent: sys.global_cpu_usage(),
            mem_used_bytes: sys.used_memory(),
            mem_total_bytes: sys.total_memory(),
            batches,
        };
        // Full means the engine has not taken the last one yet: skip this one.
        if let Err(mpsc::error::TrySendError::Closed(_)) = to_engine.try_send(sample) {
            return;
        }
    }
}
