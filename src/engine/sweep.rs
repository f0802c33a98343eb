//! On resume, before anything reruns: find dbt processes a dead supervisor left
//! behind (spawned per the journal, never recorded as finished) and kill their
//! process groups, so a batch never runs twice at once.

use nix::sys::signal::Signal;

use crate::dbt::argv::BATCH_ENV;
use crate::engine::process;

/// Kills the groups of journal-recorded children that are still alive and still
/// carry their batch's tag (a pid reused by an unrelated process is left alone).
/// Returns the batch ids whose leftovers were killed.
pub fn sweep(unfinished: &[(String, u32, u32)]) -> Vec<String> {
    let mut swept = Vec::new();
    for (batch, _attempt, pid) in unfinished {
        let pgid = *pid as i32;
        let tagged = process::group_members(pgid)
            .into_iter()
            .any(|p| has_tag(p, batch));
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
        swept.push(batch.clone());
    }
    swept
}

fn has_tag(pid: i32, batch: &str) -> bool {
    let needle = format!("{BATCH_ENV}={batch}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
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
        let (p1, p2) = (ours.id().unwrap(), other.id().unwrap());
        let swept = sweep(&[("b-sweep".into(), 1, p1), ("b-sweep".into(), 1, p2)]);
        assert_eq!(swept, vec!["b-sweep".to_string()]);
        let status = ours.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert!(
            process::group_alive(p2 as i32),
            "an untagged process is not ours"
        );
        other.kill().await.unwrap();
        process::unregister(p1 as i32);
        process::unregister(p2 as i32);
    }
}
