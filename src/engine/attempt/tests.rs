//! The attempt actor against real `sh` children standing in for dbt.

use std::time::Duration;

use super::*;
use crate::dbt::argv::Invocation;
use crate::engine::protocol::AttemptKey;

fn spec(dir: &std::path::Path, script: &str) -> AttemptSpec {
    AttemptSpec {
        key: AttemptKey {
            batch: 3,
            attempt: 1,
        },
        worker: 1,
        invocation: Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
        },
        target_dir: dir.join("target"),
        log_dir: dir.join("logs"),
        stdout_file: dir.join("attempt-1.stdout.log"),
        stderr_file: dir.join("attempt-1.stderr.log"),
        grace_int: Duration::from_millis(300),
        grace_term: Duration::from_millis(300),
        seed_parse: None,
    }
}

async fn collect(mut rx: mpsc::Receiver<AttemptReport>) -> Vec<AttemptReport> {
    let mut all = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the attempt reports within 20 s")
    {
        let last = m.is_last();
        all.push(m);
        if last {
            break;
        }
    }
    all
}

#[tokio::test]
async fn spawned_first_lines_between_exited_last() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"info":{"name":"MainReportVersion","level":"info","msg":"Running","invocation_id":"inv-9"},"data":{}}"#;
    let script = format!("echo '{line}'; echo plain; echo oops >&2; exit 1");
    let (tx, rx) = mpsc::channel(64);
    let (_ctl_tx, ctl_rx) = mpsc::channel(4);
    tokio::spawn(run(spec(dir.path(), &script), ctl_rx, tx));
    let all = collect(rx).await;
    assert!(
        matches!(all.first(), Some(AttemptReport::Spawned { .. })),
        "{all:?}"
    );
    match all.last() {
        Some(AttemptReport::Exited {
            exit,
            group_clean,
            results,
            ..
        }) => {
            assert_eq!(exit.code, Some(1));
            assert!(group_clean);
            assert_eq!(results, &Err(ReadError::Missing));
        }
        other => panic!("last: {other:?}"),
    }
    let texts: Vec<(bool, String)> = all
        .iter()
        .filter_map(|m| match m {
            AttemptReport::Line { line, .. } => Some((line.stderr, line.text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.contains(&(false, "plain".into())));
    assert!(texts.contains(&(true, "oops".into())));
    assert!(
        std::fs::read_to_string(dir.path().join("attempt-1.stderr.log"))
            .unwrap()
            .contains("oops")
    );
}

#[tokio::test]
async fn stop_runs_the_ladder_and_the_exit_comes_last() {
    let dir = tempfile::tempdir().unwrap();
    // Ignores SIGINT, dies on SIGTERM: the ladder must reach its second rung.
    let script = "trap '' INT; echo started; while :; do sleep 0.05; done";
    let (tx, mut rx) = mpsc::channel(64);
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    tokio::spawn(run(spec(dir.path(), script), ctl_rx, tx));
    // Wait for the child's first line, then stop it.
    loop {
        match rx.recv().await {
            Some(AttemptReport::Line { line, .. }) if line.text == "started" => break,
            Some(_) => {}
            None => panic!("the attempt ended early"),
        }
    }
    let t = Instant::now();
    ctl_tx.send(AttemptCtl::Stop).await.unwrap();
    let rest = collect(rx).await;
    match rest.last() {
        Some(AttemptReport::Exited { exit, .. }) => assert_eq!(exit.signal, Some(15)),
        other => panic!("last: {other:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "SIGINT's grace came first"
    );
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_failure_with_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "");
    s.invocation.program = "/no/such/dbt".into();
    let (tx, rx) = mpsc::channel(8);
    let (_ctl_tx, ctl_rx) = mpsc::channel(4);
    tokio::spawn(run(s, ctl_rx, tx));
    let all = collect(rx).await;
    assert_eq!(all.len(), 1);
    assert!(
        matches!(&all[0], AttemptReport::SpawnFailed { error, .. } if error.contains("/no/such/dbt"))
    );
}

#[test]
fn a_results_file_cut_short_after_exit_is_corrupt_not_pending() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("run_results.json");
    std::fs::write(&p, br#"{"metadata": {"invocation_id": "x"}, "results": ["#).unwrap();
    let r = final_results(&p, Some("x"), SystemTime::UNIX_EPOCH);
    match r {
        Err(ReadError::Corrupt(e)) => assert!(e.contains("truncated"), "{e}"),
        other => panic!("{other:?}"),
    }
}
