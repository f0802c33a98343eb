//! On resume, before anything reruns: find dbt processes a dead supervisor left
//! behind (spawned per the journal, never recorded as finished) and kill their
//! process groups, so a batch never runs twice at once.

use nix::sys::signal::Signal;

use crate::dbt::argv::BATCH_ENV;
use crate::engine::journal::UnfinishedChild;
use crate::engine::process;
use crate::procfs;

/// Kills the groups of journal-recorded children that are still alive and still
/// carry their batch's tag (a pid reused by an unrelated process is left alone).
/// Returns the batch ids whose leftovers were killed.
pub(crate) fn sweep(unfinished: &[UnfinishedChild]) -> Vec<String> {
    let mut swept = Vec::new();
    for child in unfinished {
        let Ok(pgid) = i32::try_from(child.pid) else {
            continue;
        };
        let tag = format!("{BATCH_ENV}={}", child.batch);
        let tagged = procfs::group_members(pgid)
            .into_iter()
            .any(|p| procfs::environ_contains(p, &tag));
        if !tagged {
            continue;
        }
        process::signal_group(pgid, Signal::SIGKILL);
        process::signal_group(pgid, Signal::SIGCONT);
        for _ in 0..100 {
            if !process::group_alive(pgid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        swept.push(child.batch.clone());
    }
    swept
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
        let swept = sweep(&[left(ours.pid()), left(other.pid())]);
        assert_eq!(swept, vec!["b-sweep".to_string()]);
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
