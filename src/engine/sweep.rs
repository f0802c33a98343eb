//! On resume, before anything reruns: find dbt processes a dead supervisor left
//! behind (spawned per the journal, never recorded as finished) and kill their
//! process groups, so a batch never runs twice at once.

use nix::sys::signal::Signal;

use crate::dbt::argv::BATCH_ENV;
use crate::engine::journal::UnfinishedChild;
use crate::engine::process;
use crate::engine::warm::launcher::STATE_ENV;
use crate::procfs;

/// Kills the groups of journal-recorded children (dbt processes, and warm
/// workers) that are still alive and still carry their tag: their batch, or this
/// state dir (a pid reused by an unrelated process is left alone). Returns what
/// was killed, for people.
pub(crate) fn sweep(
    unfinished: &[UnfinishedChild],
    workers: &[u32],
    state_dir: &std::path::Path,
) -> Vec<String> {
    let state_tag = format!("{STATE_ENV}={}", state_dir.display());
    let mut swept = Vec::new();
    for child in unfinished {
        let batch_tag = format!("{BATCH_ENV}={}", child.batch);
        if kill_if_tagged(child.pid, &[&batch_tag, &state_tag]) {
            swept.push(format!("a dbt process of batch {}", child.batch));
        }
    }
    for &pid in workers {
        if kill_if_tagged(pid, &[&state_tag]) {
            swept.push(format!("a warm dbt worker (pid {pid})"));
        }
    }
    swept
}

fn kill_if_tagged(pid: u32, tags: &[&str]) -> bool {
    let Ok(pgid) = i32::try_from(pid) else {
        return false;
    };
    let tagged = procfs::group_members(pgid)
        .into_iter()
        .any(|p| tags.iter().any(|t| procfs::environ_contains(p, t)));
    if !tagged {
        return false;
    }
    process::signal_group(pgid, Signal::SIGKILL);
    process::signal_group(pgid, Signal::SIGCONT);
    for _ in 0..100 {
        if !process::group_alive(pgid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbt::argv::Invocation;

    #[tokio::test]
    async fn kills_a_tagged_leftover_and_spares_an_untagged_one() {
        let spawn = |tag: Option<&str>| {
            let env = tag
                .map(|t| vec![(BATCH_ENV.to_string(), t.to_string())])
                .unwrap_or_default();
            process::spawn_in_group(&Invocation {
                program: "/bin/sleep".into(),
                args: vec!["30".into()],
                env,
            })
            .unwrap()
        };
        let mut ours = spawn(Some("b-sweep"));
        let mut other = spawn(None);
        let left = |pid: u32| UnfinishedChild {
            batch: "b-sweep".into(),
            attempt: 1,
            pid,
        };
        let swept = sweep(
            &[left(ours.pid()), left(other.pid())],
            &[],
            std::path::Path::new("/nowhere"),
        );
        assert_eq!(swept, vec!["a dbt process of batch b-sweep".to_string()]);
        let status = ours.child.wait().await.unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(
            process::group_alive(other.pgid),
            "an untagged process is not ours"
        );
        other.child.kill().await.unwrap();
        process::unregister(ours.pgid);
        process::unregister(other.pgid);
    }
}
