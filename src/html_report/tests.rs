//! The report's HTML, read as text (a browser test checks it rendered).

use super::*;

fn run() -> Run {
    serde_json::from_value(serde_json::json!({
        "budget": 4, "workers": 2, "threads": 2,
        "started_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:01:00+00:00",
        "exit_code": 1, "mode": "warm",
        "batches": [
            {"id": "a", "label": "2024-01-01", "status": "succeeded", "attempts": 1, "duration_s": 10.0,
             "nodes": {"success": 3, "error": 0, "skipped": 0, "pass": 0, "fail": 0, "warn": 0},
             "error": null,
             "history": [{"number": 1, "kind": "run", "worker": 1, "started_at": 100.0, "duration_s": 10.0, "outcome": "succeeded", "command": null}]},
            {"id": "b", "label": "<script>alert(1)</script>", "status": "failed", "attempts": 2, "duration_s": 12.0,
             "nodes": {"success": 1, "error": 1, "skipped": 1, "pass": 0, "fail": 0, "warn": 0},
             "error": "model.x.y: boom & <b>",
             "failing": [{"unique_id": "model.x.y", "status": "error", "message": "boom", "compiled_path": "/s/b/target/compiled/y.sql"}],
             "history": [
                {"number": 1, "kind": "run", "worker": 2, "started_at": 100.0, "duration_s": 5.0, "outcome": "failed", "command": null},
                {"number": 2, "kind": "retry", "worker": 1, "started_at": 111.0, "duration_s": 7.0, "outcome": "failed", "command": null}]},
            {"id": "c", "label": "c", "status": "pending", "attempts": 1, "duration_s": 0.0,
             "error": null,
             "history": [{"number": 1, "kind": "run", "worker": 2, "started_at": 106.0, "duration_s": null, "outcome": "running", "command": null}]}
        ]
    }))
    .unwrap()
}

#[test]
fn the_page_has_a_lane_per_worker_a_bar_per_attempt_the_table_and_the_failures() {
    let html = render(&run(), "/state", 120.0, &[]);
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches(r#"<g class="lane""#).count(), 2);
    assert_eq!(html.matches(r#"<rect class="bar"#).count(), 4);
    assert_eq!(html.matches(r#"<rect class="bar failed""#).count(), 2);
    assert_eq!(
        html.matches(r#"<rect class="bar running""#).count(),
        1,
        "a running attempt"
    );
    assert!(
        html.contains("attempt 2 (retry) · worker 1 · 7.0s · failed"),
        "hover text"
    );
    assert!(html.contains(r#"<table id="batches">"#));
    assert_eq!(html.matches("<tr><td>").count(), 3);
    assert!(html.contains("Failures (1)"));
    assert!(html.contains("/s/b/target/compiled/y.sql"));
    assert!(html.contains("finished, exit 1"));
    // The budget chart peaks at two batches of two threads.
    assert!(html.contains("peak 4"), "{html}");
}

#[test]
fn text_from_the_run_is_escaped_and_nothing_is_fetched() {
    let html = render(&run(), "/state<x>", 120.0, &[]);
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("boom &amp; &lt;b&gt;"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the page's own script"
    );
}

#[test]
fn back_to_back_attempts_on_a_worker_never_overlap_in_the_budget() {
    // b's second attempt starts on worker 1 a millisecond before a's end is on record.
    let mut r = run();
    r.batches[0].history[0].duration_s = Some(11.001);
    let html = render(&r, "/state", 120.0, &[]);
    assert!(html.contains("peak 4"), "{html}");
}

#[test]
fn a_run_without_attempts_still_renders() {
    let mut r = run();
    for b in &mut r.batches {
        b.history.clear();
    }
    let html = render(&r, "/state", 120.0, &[]);
    assert_eq!(html.matches(r#"<rect class="bar"#).count(), 0);
    assert!(html.contains("0 attempts"));
}

#[test]
fn the_connection_log_draws_reserved_and_active() {
    let points = [
        Point {
            t: 100.0,
            reserved: 4,
            active: 1,
        },
        Point {
            t: 105.0,
            reserved: 4,
            active: 3,
        },
        Point {
            t: 118.0,
            reserved: 0,
            active: 0,
        },
    ];
    let html = render(&run(), "/state", 120.0, &points);
    assert!(html.contains(r#"<polyline class="reserved""#));
    assert!(html.contains(r#"<polyline class="active""#));
    assert!(html.contains("peak 4"));
    // Without a log there is no active line.
    let html = render(&run(), "/state", 120.0, &[]);
    assert!(!html.contains(r#"<polyline class="active""#));
}

#[test]
fn the_page_says_how_long_the_run_prepared_and_why_it_stopped_early() {
    let mut r = run();
    r.preparation = Some(crate::engine::summary::Preparation {
        launched_at: "2026-01-01T09:59:30+00:00".into(),
        phases: vec![
            crate::engine::summary::PhaseTime {
                phase: "resolve".into(),
                seconds: 20.0,
            },
            crate::engine::summary::PhaseTime {
                phase: "mode".into(),
                seconds: 4.1,
            },
        ],
    });
    r.breaker = Some("the last 3 attempts all failed alike (connection failure): <refused>".into());
    let html = render(&r, "/state", 120.0, &[]);
    assert!(
        html.contains("prepared in 24.1s (resolve 20.0s, mode 4.1s)"),
        "{html}"
    );
    assert!(
        html.contains("stopped early: the last 3 attempts"),
        "{html}"
    );
    assert!(html.contains("&lt;refused&gt;"), "escaped");
    assert!(!render(&run(), "/state", 120.0, &[]).contains("prepared in"));
}
