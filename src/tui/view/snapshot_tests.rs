//! Whole-screen snapshots through ratatui's TestBackend. Time only moves through
//! `Msg::Tick`, and every path is fixed, so the screens are deterministic.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::draw;
use crate::dbt::events::{Level, StatusClass};
use crate::dbt::run_results::NodeCounts;
use crate::engine::messages::{BatchResources, FailingNode};
use crate::engine::{BatchStatus, BatchView, Event, LogLine, Resources, RunInfo, WorkerView};
use crate::tui::app::{App, Msg};
use crate::tui::theme::Theme;

const NOW: f64 = 1_700_000_100.0;

fn view(index: usize, status: BatchStatus) -> BatchView {
    let day = 1 + index;
    BatchView {
        index,
        id: format!("2024-01-{day:02}"),
        label: format!("2024-01-{day:02}"),
        status,
        attempts: u32::from(status != BatchStatus::Pending),
        duration_s: 5.5 + index as f64,
        nodes_total: Some(46),
        ..Default::default()
    }
}

fn running(index: usize, worker: usize, done: u32) -> BatchView {
    BatchView {
        worker: Some(worker),
        pid: Some(4000 + u32::try_from(worker).unwrap()),
        running_since: Some(NOW - 3.0 * worker as f64),
        nodes_done: done,
        executing: 1,
        ..view(index, BatchStatus::Running)
    }
}

fn line(level: Level, class: Option<StatusClass>, text: &str) -> LogLine {
    LogLine {
        level,
        class,
        text: text.into(),
        plain: false,
    }
}

/// Eight windows on four workers: two done, one failed, four running (one of
/// them paused), one pending.
fn mid_run(size: (u16, u16)) -> App {
    let mut app = App::new(NOW - 42.0, size);
    let ok = |i| BatchView {
        counts: NodeCounts {
            success: 14,
            pass: 32,
            ..Default::default()
        },
        nodes_done: 46,
        ..view(i, BatchStatus::Succeeded)
    };
    let failed = BatchView {
        counts: NodeCounts {
            success: 5,
            pass: 32,
            error: 1,
            skipped: 8,
            ..Default::default()
        },
        nodes_done: 46,
        error: Some("model.herd_demo.stg_shipments: Compilation Error in model stg_shipments (models/staging/stg_shipments.sql)\n  shipments for 2024-01-03 have not landed".into()),
        failing: vec![FailingNode {
            unique_id: "model.herd_demo.stg_shipments".into(),
            status: "error".into(),
            message: Some("Compilation Error in model stg_shipments\n  shipments for 2024-01-03 have not landed in /data/landing (late upstream delivery)".into()),
            compiled_path: Some("/state/batches/2024-01-03/target/compiled/herd_demo/models/staging/stg_shipments.sql".into()),
        }],
        ..view(2, BatchStatus::Failed)
    };
    let mut paused = running(6, 4, 3);
    paused.suspended = true;
    let batches = vec![
        ok(0),
        ok(1),
        failed,
        running(3, 1, 30),
        running(4, 2, 12),
        running(5, 3, 0),
        paused,
        view(7, BatchStatus::Pending),
    ];
    let workers = (1..=4)
        .map(|n| WorkerView {
            number: n,
            paused: n == 4,
            retiring: false,
            batch: Some(2 + n),
            warm: None,
        })
        .collect();
    app.update(Msg::Engine(Event::Started {
        info: RunInfo {
            workers: 4,
            threads: 1,
            budget: 4,
            retries: 0,
            state_dir: "/state".into(),
            command: "build".into(),
            plan: Vec::new(),
            mode: "cold".into(),
            mode_reason: None,
        },
        batches,
        workers,
    }));
    app.update(Msg::Engine(Event::QueueChanged(vec![7])));
    for (batch, worker) in [(3, 1), (4, 2), (5, 3), (6, 4)] {
        let lines = [
            line(Level::Info, None, "Running with dbt=1.11.16"),
            line(
                Level::Info,
                None,
                "Found 14 models, 32 data tests, 5 sources, 515 macros",
            ),
            line(Level::Info, None, "START model stg_orders (1/46)"),
            line(
                Level::Info,
                Some(StatusClass::Good),
                "OK model stg_orders in 0.12s (1/46)",
            ),
            line(
                Level::Info,
                None,
                "START test \x1b[1munique_stg_orders_order_id\x1b[0m (2/46)",
            ),
            line(
                Level::Warn,
                Some(StatusClass::Warn),
                "WARN test accepted_values_stg_orders_status in 0.05s (3/46)",
            ),
        ];
        for l in lines {
            app.update(Msg::Engine(Event::Log {
                batch,
                worker,
                line: l,
            }));
        }
    }
    for l in [
        line(Level::Info, None, "START model stg_shipments (13/46)"),
        line(
            Level::Error,
            Some(StatusClass::Bad),
            "ERROR model stg_shipments (13/46)",
        ),
        line(
            Level::Error,
            None,
            "Compilation Error in model stg_shipments (models/staging/stg_shipments.sql)\n  shipments for 2024-01-03 have not landed",
        ),
        line(
            Level::Info,
            Some(StatusClass::Skipped),
            "SKIP model fct_shipments_daily (14/46)",
        ),
    ] {
        app.update(Msg::Engine(Event::Log {
            batch: 2,
            worker: 3,
            line: l,
        }));
    }
    app.update(Msg::Engine(Event::Resources(Resources {
        cpu_percent: 87.0,
        mem_used_bytes: 3 << 30,
        mem_total_bytes: 16 << 30,
        batches: (3..7)
            .map(|b| BatchResources {
                batch: b,
                cpu_percent: 48.0,
                rss_bytes: 130 << 20,
            })
            .collect(),
    })));
    app.update(Msg::Tick(NOW));
    app
}

fn screen(app: &App) -> TestBackend {
    let mut term = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    term.draw(|f| draw(f, app, &Theme { color: true })).unwrap();
    term.backend().clone()
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

#[test]
fn grid_mid_run() {
    for size in SIZES {
        let app = mid_run(size);
        insta::assert_snapshot!(format!("grid_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn zoomed_pane() {
    for size in SIZES {
        let mut app = mid_run(size);
        press(&mut app, KeyCode::Enter);
        insta::assert_snapshot!(format!("zoom_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn batch_table_with_a_failure() {
    for size in SIZES {
        let mut app = mid_run(size);
        press(&mut app, KeyCode::Tab);
        app.selected = 2;
        insta::assert_snapshot!(format!("table_failure_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn help_overlay() {
    for size in SIZES {
        let mut app = mid_run(size);
        press(&mut app, KeyCode::Char('?'));
        insta::assert_snapshot!(format!("help_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn failed_batch_shows_its_failing_node_message_and_compiled_sql() {
    let mut app = mid_run((160, 48));
    press(&mut app, KeyCode::Tab);
    app.selected = 2;
    let text = format!("{}", screen(&app));
    assert!(text.contains("model.herd_demo.stg_shipments"), "{text}");
    assert!(text.contains("(late upstream"), "{text}");
    assert!(
        text.contains("compiled SQL: /state/batches/2024-01-03/target/compiled"),
        "{text}"
    );
}

#[test]
fn sixteen_workers_at_80x24_each_show_label_and_status() {
    let mut app = App::new(NOW, (80, 24));
    let batches: Vec<_> = (0..16).map(|i| running(i, i + 1, 0)).collect();
    let workers = (1..=16)
        .map(|n| WorkerView {
            number: n,
            paused: false,
            retiring: false,
            batch: Some(n - 1),
            warm: None,
        })
        .collect();
    app.update(Msg::Engine(Event::Started {
        info: RunInfo {
            workers: 16,
            threads: 1,
            budget: 16,
            retries: 0,
            state_dir: "/state".into(),
            command: "build".into(),
            plan: Vec::new(),
            mode: "cold".into(),
            mode_reason: None,
        },
        batches,
        workers,
    }));
    let text = format!("{}", screen(&app));
    for i in 0..16 {
        let needle = format!("w{:<2} 2024-01-{:02} RUNNING", i + 1, i + 1);
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    insta::assert_snapshot!("grid_16_workers_80x24", text);
}

#[test]
fn no_color_keeps_the_words() {
    let app = mid_run((160, 48));
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| draw(f, &app, &Theme { color: false }))
        .unwrap();
    let buf = term.backend().buffer();
    assert!(
        buf.content()
            .iter()
            .all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset),
        "a colour was drawn with colour off"
    );
    let text = format!("{}", term.backend());
    for word in ["FAILED", "PAUSED", "RUNNING", "WARN test"] {
        assert!(text.contains(word), "{word} missing");
    }
}

/// A shared warehouse: the run-once batch failed, the windows are blocked on it,
/// and one waits on a relation another window holds.
fn shared_plan(size: (u16, u16)) -> App {
    let mut app = App::new(NOW - 30.0, size);
    let mut shared = view(0, BatchStatus::Failed);
    shared.id = "shared".into();
    shared.label = "shared, before the windows".into();
    shared.attempts = 1;
    shared.error = Some("model.p.a: relation \"raw_events\" does not exist".into());
    let mut batches = vec![shared];
    for i in 1..=3 {
        let mut w = view(i, BatchStatus::Pending);
        w.after = vec![0];
        batches.push(w);
    }
    let mut holder = running(4, 1, 3);
    holder.locks = vec!["\"db\".\"s\".\"window_snapshot\"".into()];
    let mut waiter = view(5, BatchStatus::Pending);
    waiter.locks = holder.locks.clone();
    batches.extend([holder, waiter]);
    app.update(Msg::Engine(Event::Started {
        info: RunInfo {
            workers: 2,
            threads: 1,
            budget: 2,
            retries: 0,
            state_dir: "/state".into(),
            command: "build".into(),
            plan: vec![
                "plan: one shared warehouse: batches are ordered so that none breaks another (resolved against dbt's graph in 2.1s)".into(),
                "plan: a, b do not depend on the window: built once in shared, before the windows, which leave them out".into(),
                "plan: window_snapshot depends on the window but is not incremental, so every window rewrites it: those 2 windows run one at a time. To run them in parallel, make window_snapshot incremental or ephemeral, or give it an alias per window".into(),
            ],
            mode: "warm".into(),
            mode_reason: None,
        },
        batches,
        workers: (1..=2)
            .map(|n| WorkerView {
                number: n,
                paused: false,
                retiring: false,
                batch: (n == 1).then_some(4),
                warm: None,
            })
            .collect(),
    }));
    app.update(Msg::Tick(NOW));
    app
}

#[test]
fn blocked_and_waiting_batches_say_on_which() {
    for size in SIZES {
        let mut app = shared_plan(size);
        press(&mut app, KeyCode::Tab);
        let text = format!("{:?}", screen(&app));
        assert_eq!(text.matches("BLOCKED").count(), 3, "{text}");
        assert!(text.contains("WAITING"), "{text}");
        insta::assert_snapshot!(format!("table_blocked_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn help_shows_the_plan_first() {
    for size in SIZES {
        let mut app = shared_plan(size);
        press(&mut app, KeyCode::Char('?'));
        let text = format!("{:?}", screen(&app));
        assert!(
            text.contains("window_snapshot depends on the window"),
            "{text}"
        );
        insta::assert_snapshot!(format!("help_plan_{}x{}", size.0, size.1), screen(&app));
    }
}

/// Thirty windows, three of them failed, filtered to the failures with two
/// marked: what a bulk retry starts from.
fn filtered_and_marked(size: (u16, u16)) -> App {
    let mut app = mid_run(size);
    let more: Vec<BatchView> = (8..30)
        .map(|i| {
            let failed = i == 12 || i == 21;
            BatchView {
                error: failed.then(|| {
                    format!("model.herd_demo.stg_shipments: shipments for 2024-01-{:02} have not landed", i + 1)
                }),
                ..view(
                    i,
                    if failed {
                        BatchStatus::Failed
                    } else {
                        BatchStatus::Pending
                    },
                )
            }
        })
        .collect();
    app.update(Msg::Engine(Event::BatchesAdded(more)));
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Char('/'));
    for c in "fail".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    app.update(Msg::Tick(NOW));
    app
}

#[test]
fn filtered_table_with_marks() {
    for size in SIZES {
        let app = filtered_and_marked(size);
        insta::assert_snapshot!(
            format!("table_filtered_{}x{}", size.0, size.1),
            screen(&app)
        );
    }
}

#[test]
fn confirm_before_cancelling_a_running_batch() {
    for size in SIZES {
        let mut app = mid_run(size);
        press(&mut app, KeyCode::Char('c'));
        insta::assert_snapshot!(
            format!("confirm_cancel_{}x{}", size.0, size.1),
            screen(&app)
        );
    }
}

#[test]
fn a_pane_says_parsing_until_dbt_counts_its_nodes_and_a_failed_bar_is_red() {
    let mut app = mid_run((160, 48));
    let mut starting = app.batches[5].clone();
    starting.nodes_total = None;
    starting.nodes_done = 0;
    app.update(Msg::Engine(Event::BatchChanged(starting)));
    let text = format!("{}", screen(&app));
    assert!(text.contains("parsing…"), "{text}");
    assert!(!text.contains("0/0 nodes"), "{text}");
    // The failed batch's pane: its bar in the error colour.
    let mut failed = app.batches[2].clone();
    failed.worker = Some(1);
    app.update(Msg::Engine(Event::BatchChanged(failed)));
    app.update(Msg::Engine(Event::WorkersChanged(
        (1..=4)
            .map(|n| WorkerView {
                number: n,
                paused: false,
                retiring: false,
                batch: if n == 1 { None } else { Some(2 + n) },
                warm: None,
            })
            .collect(),
    )));
    let backend = screen(&app);
    let buf = backend.buffer();
    let bar_cell = (0..buf.area.height)
        .flat_map(|y| (0..buf.area.width / 2).map(move |x| (x, y)))
        .find(|&(x, y)| buf[(x, y)].symbol() == "█")
        .expect("a bar in the first pane");
    assert_eq!(
        buf[bar_cell].fg,
        Theme { color: true }.error().fg.unwrap(),
        "the failed batch's bar"
    );
}

#[test]
fn y_shows_the_command_an_attempt_ran_whole() {
    use crate::engine::messages::{AttemptOutcome, AttemptView, HistoryKind};
    for size in SIZES {
        let mut app = mid_run(size);
        let mut v = app.batches[3].clone();
        v.history = vec![AttemptView {
            number: 1,
            kind: HistoryKind::Run,
            worker: 1,
            started_at: NOW - 3.0,
            duration_s: None,
            outcome: AttemptOutcome::Running,
            failure_class: None,
            command: Some(
                "DBT_ENV_CUSTOM_ENV_HERD_BATCH=2024-01-04 DUCKDB_PATH=/wh/worker1.duckdb /venv/bin/dbt build --vars '{\"start_date\": \"2024-01-04\", \"end_date\": \"2024-01-05\"}' --log-format json --threads 1 --target-path /state/batches/2024-01-04/target --log-path /state/batches/2024-01-04/logs".into(),
            ),
        }];
        app.update(Msg::Engine(Event::BatchChanged(v)));
        press(&mut app, KeyCode::Char('y'));
        insta::assert_snapshot!(format!("command_{}x{}", size.0, size.1), screen(&app));
    }
}

#[test]
fn table_sorted_by_status_with_workers_held_by_the_budget() {
    for size in SIZES {
        let mut app = mid_run(size);
        // Worker 4's batch ends; the budget (4, full) holds it from the next one.
        let mut done = app.batches[6].clone();
        done.status = BatchStatus::Succeeded;
        done.worker = None;
        app.update(Msg::Engine(Event::BatchChanged(done)));
        app.update(Msg::Engine(Event::BudgetChanged(3)));
        app.update(Msg::Engine(Event::WorkersChanged(
            (1..=4)
                .map(|n| WorkerView {
                    number: n,
                    paused: false,
                    retiring: false,
                    batch: (n < 4).then_some(2 + n),
                    warm: None,
                })
                .collect(),
        )));
        assert_eq!(app.held_by_budget(), 1);
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Char('o'));
        press(&mut app, KeyCode::Char('o'));
        press(&mut app, KeyCode::Char('o'));
        app.update(Msg::Tick(NOW + 20.0));
        insta::assert_snapshot!(
            format!("table_by_status_{}x{}", size.0, size.1),
            screen(&app)
        );
    }
}

#[test]
fn editing_a_failed_batch_says_it_reruns_in_full() {
    for size in SIZES {
        let mut app = mid_run(size);
        press(&mut app, KeyCode::Tab);
        app.selected = 2;
        press(&mut app, KeyCode::Char('e'));
        let text = format!("{}", screen(&app));
        assert!(
            text.contains("(applying starts a full rerun)") || size.0 < 100,
            "{text}"
        );
        insta::assert_snapshot!(format!("edit_failed_{}x{}", size.0, size.1), text);
    }
}

#[test]
fn at_40x10_the_table_still_shows_rows_and_help_scrolls() {
    let mut app = mid_run((40, 10));
    press(&mut app, KeyCode::Tab);
    app.selected = 2;
    let table = format!("{}", screen(&app));
    assert!(table.contains("2024-01-03"), "{table}");
    insta::assert_snapshot!("table_40x10", table);
    press(&mut app, KeyCode::Char('?'));
    let top = format!("{}", screen(&app));
    press(&mut app, KeyCode::PageDown);
    let lower = format!("{}", screen(&app));
    assert_ne!(top, lower, "help scrolls");
    assert!(lower.contains("scroll (10/"), "{lower}");
}

#[test]
fn the_timeline_has_a_lane_per_worker_and_a_bar_per_attempt() {
    use crate::engine::messages::{AttemptOutcome, AttemptView, HistoryKind};
    let attempt = |worker, start: f64, took: Option<f64>, outcome| AttemptView {
        number: 1,
        kind: HistoryKind::Run,
        worker,
        started_at: NOW - 40.0 + start,
        duration_s: took,
        outcome,
        failure_class: None,
        command: None,
    };
    for size in SIZES {
        let mut app = mid_run(size);
        let histories = [
            vec![attempt(1, 0.0, Some(10.0), AttemptOutcome::Succeeded)],
            vec![attempt(2, 0.0, Some(14.0), AttemptOutcome::Failed)],
            vec![attempt(1, 10.0, Some(12.0), AttemptOutcome::Succeeded)],
            vec![attempt(1, 22.0, None, AttemptOutcome::Running)],
            vec![attempt(2, 14.0, Some(6.0), AttemptOutcome::Cancelled)],
        ];
        for (i, h) in histories.into_iter().enumerate() {
            let mut v = app.batches[i].clone();
            v.history = h;
            app.update(Msg::Engine(Event::BatchChanged(v)));
        }
        press(&mut app, KeyCode::Char('t'));
        assert_eq!(app.screen, crate::tui::app::Screen::Timeline);
        insta::assert_snapshot!(format!("timeline_{}x{}", size.0, size.1), screen(&app));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, crate::tui::app::Screen::Grid);
    }
}

/// A run still preparing: the resolution done, warm workers starting, and
/// what that phase waits on; elapsed counts from the launch.
#[test]
fn a_preparing_run_shows_each_phase_and_what_it_waits_on() {
    use crate::engine::{PrepPhase, PrepView};
    for size in [(80, 24), (120, 30)] {
        let mut app = App::new(NOW, size);
        app.detachable = true;
        app.update(Msg::Engine(Event::Preparing(PrepView {
            launched_at: NOW - 37.0,
            state_dir: "/runs/20241204-031500".into(),
            phases: vec![
                PrepPhase {
                    phase: "resolve".into(),
                    doing: "resolving the plan against dbt's graph (dbt ls of each selection)"
                        .into(),
                    began_s: 0.2,
                    seconds: Some(24.1),
                },
                PrepPhase {
                    phase: "mode".into(),
                    doing: "choosing warm or cold".into(),
                    began_s: 24.3,
                    seconds: None,
                },
            ],
            waits_on: vec!["2 × dbt worker".into()],
            done: false,
        })));
        app.update(Msg::Tick(NOW));
        let text = format!("{:?}", screen(&app));
        assert!(text.contains("elapsed 37.0s"), "from the launch:\n{text}");
        assert!(text.contains("waits on"), "{text}");
        insta::assert_snapshot!(format!("preparing_{}x{}", size.0, size.1), screen(&app));
    }
}

/// A warm worker's parse is its own span in its lane, before the batch it
/// then runs (whose bar starts when the batch does).
#[test]
fn the_timeline_shows_a_warm_workers_parse_before_its_first_batch() {
    use crate::engine::messages::{AttemptOutcome, AttemptView, HistoryKind, WarmState, WarmView};
    let mut app = mid_run((80, 24));
    let mut workers = app.workers.clone();
    workers[0].warm = Some(WarmView {
        state: WarmState::Busy,
        parse_s: Some(20.0),
        runs: 1,
        pid: Some(7),
        since: Some(NOW - 40.0),
    });
    app.update(Msg::Engine(Event::WorkersChanged(workers)));
    let mut v = app.batches[0].clone();
    v.history = vec![AttemptView {
        number: 1,
        kind: HistoryKind::Run,
        worker: 1,
        started_at: NOW - 20.0,
        duration_s: Some(10.0),
        outcome: AttemptOutcome::Succeeded,
        failure_class: None,
        command: None,
    }];
    app.update(Msg::Engine(Event::BatchChanged(v)));
    press(&mut app, KeyCode::Char('t'));
    let text = format!("{:?}", screen(&app));
    let lane = text
        .lines()
        .find(|l| l.contains("w1 "))
        .unwrap_or_else(|| panic!("no lane w1:\n{text}"));
    let parse = lane.find('░').expect("a parse span");
    let bar = lane.find('█').expect("the batch's bar");
    assert!(parse < bar, "the parse comes first: {lane}");
    assert!(text.contains("░ parse"), "{text}");
}

/// After the warehouse refused connections, the connections gauge says how
/// many batches run at once now.
#[test]
fn the_header_says_how_many_run_at_once_after_the_warehouse_refused() {
    let mut app = mid_run((160, 40));
    app.update(Msg::Engine(Event::AtOnce(Some(3))));
    let text = format!("{:?}", screen(&app));
    let gauge = text
        .lines()
        .find(|l| l.contains("reserved") || l.contains("conn "))
        .unwrap_or_else(|| panic!("no connections gauge:\n{text}"));
    assert!(gauge.contains("3 at once"), "{gauge}");
    app.update(Msg::Engine(Event::AtOnce(None)));
    let text = format!("{:?}", screen(&app));
    assert!(!text.contains("at once"), "{text}");
}

/// The breaker's banner holds the footer while the queue stays paused.
#[test]
fn a_tripped_breaker_holds_the_footer_with_its_diagnosis() {
    let mut app = mid_run((80, 24));
    app.update(Msg::Engine(Event::QueuePaused(true)));
    app.update(Msg::Engine(Event::BreakerTripped(
        "the last 3 attempts all failed alike (connection failure): Connection refused".into(),
    )));
    app.update(Msg::Engine(Event::Notice {
        level: Level::Info,
        text: "something later".into(),
    }));
    let backend = screen(&app);
    let buf = backend.buffer();
    let y = buf.area.height - 1;
    let footer: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
    assert!(footer.contains("STOPPED EARLY · P resumes"), "{footer}");
    assert!(footer.contains("the last 3 attempts"), "{footer}");
}
