//! `App::update` without a terminal: keys and engine events in, state and
//! engine commands out.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::engine::LogLine;
use crate::engine::messages::FailingNode;

pub(crate) fn batch(index: usize, status: BatchStatus) -> BatchView {
    let day = 4 + index;
    BatchView {
        index,
        id: format!("2024-03-{day:02}"),
        label: format!("2024-03-{day:02}"),
        vars: format!(r#"{{"start_date":"2024-03-{day:02}"}}"#),
        status,
        attempts: u32::from(status != BatchStatus::Pending),
        ..Default::default()
    }
}

pub(crate) fn worker(number: usize, batch: Option<usize>) -> WorkerView {
    WorkerView {
        number,
        paused: false,
        retiring: false,
        batch,
        warm: None,
    }
}

pub(crate) fn info() -> RunInfo {
    RunInfo {
        workers: 2,
        threads: 2,
        budget: 4,
        retries: 0,
        state_dir: "/state".into(),
        command: "build".into(),
        plan: Vec::new(),
        mode: "cold".into(),
        mode_reason: None,
    }
}

/// Two workers: batch 0 running on worker 1, batch 1 failed, batch 2 pending.
pub(crate) fn app() -> App {
    let mut app = App::new(1000.0, (120, 40));
    let mut running = batch(0, BatchStatus::Running);
    running.worker = Some(1);
    running.running_since = Some(990.0);
    let mut failed = batch(1, BatchStatus::Failed);
    failed.error = Some("model.p.a: boom".into());
    failed.failing = vec![FailingNode {
        unique_id: "model.p.a".into(),
        status: "error".into(),
        message: Some("boom".into()),
        compiled_path: Some("target/compiled/p/models/a.sql".into()),
    }];
    app.update(Msg::Engine(Event::Started {
        info: info(),
        batches: vec![running, failed, batch(2, BatchStatus::Pending)],
        workers: vec![worker(1, Some(0)), worker(2, None)],
    }));
    app.update(Msg::Engine(Event::QueueChanged(vec![2])));
    app
}

pub(crate) fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub(crate) fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

pub(crate) fn sent(fx: &[Effect]) -> Vec<Command> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Send(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn log(app: &mut App, batch: usize, text: &str) {
    app.update(Msg::Engine(Event::Log {
        batch,
        worker: 1,
        line: LogLine {
            level: Level::Info,
            class: None,
            text: text.into(),
            plain: false,
        },
    }));
}

#[test]
fn quitting_while_batches_run_asks_first_and_y_stops_them() {
    let mut app = app();
    assert!(sent(&app.update(key('q'))).is_empty());
    assert_eq!(app.overlay, Overlay::ConfirmQuit);
    assert_eq!(
        sent(&app.update(key('y'))),
        [Command::Shutdown { force: false }]
    );
    assert!(app.stopping);
    assert_eq!(app.update(Msg::Engine(Event::Stopped)), [Effect::Exit]);
}

#[test]
fn a_served_run_can_be_left_running_with_d_or_from_the_quit_question() {
    let mut app = app();
    // A run in this process cannot detach: d says so and does nothing.
    assert!(app.update(key('d')).is_empty());
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.text.contains("cannot detach"))
    );
    app.detachable = true;
    assert_eq!(app.update(key('d')), [Effect::Detach]);
    assert!(sent(&app.update(key('q'))).is_empty());
    assert_eq!(app.overlay, Overlay::ConfirmQuit);
    assert_eq!(app.update(key('d')), [Effect::Detach]);
    assert!(!app.stopping, "detaching stops nothing");
}

#[test]
fn a_read_only_watcher_quits_at_once_without_stopping_the_run() {
    let mut app = app();
    app.detachable = true;
    app.read_only = true;
    assert_eq!(app.update(key('q')), [Effect::Detach]);
    assert!(!app.stopping);
}

#[test]
fn any_other_key_cancels_the_quit_question() {
    let mut app = app();
    app.update(key('q'));
    assert!(sent(&app.update(key('n'))).is_empty());
    assert_eq!(app.overlay, Overlay::None);
    assert!(!app.stopping);
}

#[test]
fn quitting_when_nothing_runs_needs_no_question() {
    let mut app = app();
    let mut done = batch(0, BatchStatus::Succeeded);
    done.worker = None;
    app.update(Msg::Engine(Event::BatchChanged(done)));
    assert_eq!(
        sent(&app.update(key('q'))),
        [Command::Shutdown { force: false }]
    );
}

#[test]
fn ctrl_c_stops_gracefully_then_kills_and_is_remembered_for_the_exit_status() {
    let mut app = app();
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(
        sent(&app.update(ctrl_c.clone())),
        [Command::Shutdown { force: false }]
    );
    assert_eq!(app.interrupted, Some(libc::SIGINT));
    assert_eq!(
        sent(&app.update(ctrl_c)),
        [Command::Shutdown { force: true }]
    );
}

#[test]
fn a_hangup_stops_the_run() {
    let mut app = app();
    assert_eq!(
        sent(&app.update(Msg::Signal(libc::SIGHUP))),
        [Command::Shutdown { force: false }]
    );
    assert_eq!(app.interrupted, Some(libc::SIGHUP));
}

#[test]
fn p_pauses_and_resumes_the_focused_worker() {
    let mut app = app();
    assert_eq!(sent(&app.update(key('p'))), [Command::PauseWorker(1)]);
    let mut w = worker(1, Some(0));
    w.paused = true;
    app.update(Msg::Engine(Event::WorkersChanged(vec![w, worker(2, None)])));
    assert_eq!(sent(&app.update(key('p'))), [Command::ResumeWorker(1)]);
    // The second pane has its own worker.
    app.focus = 1;
    assert_eq!(sent(&app.update(key('p'))), [Command::PauseWorker(2)]);
}

#[test]
fn shift_p_toggles_the_queue() {
    let mut app = app();
    assert_eq!(sent(&app.update(key('P'))), [Command::PauseQueue]);
    app.update(Msg::Engine(Event::QueuePaused(true)));
    assert_eq!(sent(&app.update(key('P'))), [Command::ResumeQueue]);
}

#[test]
fn retry_acts_on_the_selected_failed_batch_and_explains_otherwise() {
    let mut app = app();
    // In the grid the focused pane runs batch 0: nothing to retry.
    assert!(sent(&app.update(key('r'))).is_empty());
    assert!(app.notice.as_ref().unwrap().text.contains("has not failed"));
    app.update(code(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Table);
    assert_eq!(
        app.selected, 0,
        "the table opens on the focused pane's batch"
    );
    app.update(key('j'));
    assert_eq!(sent(&app.update(key('r'))), [Command::Retry(1)]);
    assert_eq!(sent(&app.update(key('R'))), [Command::RetryAllFailed]);
}

#[test]
fn retry_all_with_nothing_failed_says_so() {
    let mut app = app();
    let mut ok = batch(1, BatchStatus::Succeeded);
    ok.attempts = 2;
    app.update(Msg::Engine(Event::BatchChanged(ok)));
    assert!(sent(&app.update(key('R'))).is_empty());
    assert!(
        app.notice
            .as_ref()
            .unwrap()
            .text
            .contains("no failed batch")
    );
}

#[test]
fn cancel_applies_to_running_and_pending_batches() {
    let mut app = app();
    // A running batch: only after y.
    assert!(sent(&app.update(key('c'))).is_empty());
    assert!(matches!(&app.overlay, Overlay::Confirm(c) if c.question.contains("which is running")));
    assert_eq!(sent(&app.update(key('y'))), [Command::Cancel(0)]);
    // n (or any other key) does nothing.
    app.update(key('c'));
    assert!(sent(&app.update(key('n'))).is_empty());
    assert_eq!(app.overlay, Overlay::None);
    app.update(code(KeyCode::Tab));
    app.update(key('G'));
    assert_eq!(app.selected, 2);
    assert_eq!(sent(&app.update(key('c'))), [Command::Cancel(2)]);
}

#[test]
fn workers_go_up_and_down_but_never_below_one() {
    let mut app = app();
    assert_eq!(
        sent(&app.update(key('+'))),
        [Command::ChangeWorkers { by: 1 }]
    );
    assert_eq!(
        sent(&app.update(key('-'))),
        [Command::ChangeWorkers { by: -1 }]
    );
    app.update(Msg::Engine(Event::WorkersChanged(vec![worker(1, Some(0))])));
    assert!(sent(&app.update(key('-'))).is_empty());
}

#[test]
fn the_budget_editor_sends_a_valid_number_and_rejects_others() {
    let mut app = app();
    app.update(key('b'));
    assert!(matches!(app.overlay, Overlay::Input(_)));
    app.update(code(KeyCode::Backspace));
    app.update(key('8'));
    assert_eq!(
        sent(&app.update(code(KeyCode::Enter))),
        [Command::SetBudget(8)]
    );

    app.update(key('b'));
    app.update(key('x'));
    assert!(sent(&app.update(code(KeyCode::Enter))).is_empty());
    let notice = app.notice.clone().unwrap();
    assert_eq!(notice.level, Level::Error);
    assert!(notice.text.contains("'4x'"), "{}", notice.text);
}

#[test]
fn editing_a_failed_batch_prefills_and_sends_selector_and_vars() {
    let mut app = app();
    app.update(code(KeyCode::Tab));
    app.update(key('j'));
    app.update(key('e'));
    let Overlay::Input(input) = &app.overlay else {
        panic!("no editor: {:?}", app.overlay)
    };
    assert_eq!(input.fields[1].value, r#"{"start_date":"2024-03-05"}"#);
    for c in "stg_orders+".chars() {
        app.update(key(c));
    }
    assert_eq!(
        sent(&app.update(code(KeyCode::Enter))),
        [Command::EditBatch {
            batch: 1,
            select: Some("stg_orders+".into()),
            vars: r#"{"start_date":"2024-03-05"}"#.into(),
        }]
    );
}

#[test]
fn bad_vars_keep_the_editor_open_with_the_reason() {
    let mut app = app();
    app.update(code(KeyCode::Tab));
    app.update(key('j'));
    app.update(key('e'));
    app.update(code(KeyCode::Tab));
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    for c in "[1, 2]".chars() {
        app.update(key(c));
    }
    assert!(sent(&app.update(code(KeyCode::Enter))).is_empty());
    assert!(matches!(app.overlay, Overlay::Input(_)));
    assert!(app.notice.as_ref().unwrap().text.contains("invalid --vars"));
}

#[test]
fn running_batches_cannot_be_edited_split_or_moved() {
    let mut app = app();
    for k in ['e', 's', 'K'] {
        assert!(sent(&app.update(key(k))).is_empty(), "{k}");
        assert_eq!(app.overlay, Overlay::None);
    }
}

#[test]
fn split_and_queue_moves_apply_to_a_pending_batch() {
    let mut app = app();
    app.update(code(KeyCode::Tab));
    app.update(key('G'));
    assert_eq!(sent(&app.update(key('s'))), [Command::SplitBatch(2)]);
    assert_eq!(
        sent(&app.update(key('K'))),
        [Command::MoveBatch { batch: 2, up: true }]
    );
    assert_eq!(
        sent(&app.update(key('J'))),
        [Command::MoveBatch {
            batch: 2,
            up: false
        }]
    );
}

#[test]
fn an_idle_pane_keeps_showing_the_batch_its_worker_ran_last() {
    let mut app = app();
    let mut done = batch(0, BatchStatus::Succeeded);
    done.worker = Some(1);
    app.update(Msg::Engine(Event::BatchChanged(done)));
    app.update(Msg::Engine(Event::WorkersChanged(vec![
        worker(1, None),
        worker(2, None),
    ])));
    assert_eq!(app.pane_batch(0), Some(0));
    assert_eq!(app.pane_batch(1), None);
}

#[test]
fn zoom_scrolls_follows_and_searches() {
    let mut app = app();
    for i in 0..100 {
        log(&mut app, 0, &format!("line {i}"));
    }
    log(&mut app, 0, "ERROR in model a");
    app.update(code(KeyCode::Enter));
    let z = app.zoom.clone().unwrap();
    assert_eq!((z.batch, z.offset, z.follow), (0, 0, true));

    app.update(code(KeyCode::PageUp));
    let z = app.zoom.clone().unwrap();
    assert!(!z.follow && z.offset > 0);
    // New output does not move what is being read.
    log(&mut app, 0, "more");
    assert_eq!(app.zoom.as_ref().unwrap().offset, z.offset + 1);

    app.update(key('/'));
    for c in "line 7".chars() {
        app.update(key(c));
    }
    app.update(code(KeyCode::Enter));
    let first = app.zoom.as_ref().unwrap().matched.unwrap();
    assert!(app.logs[0].get(first).unwrap().folded.contains("line 7"));
    app.update(key('n'));
    let second = app.zoom.as_ref().unwrap().matched.unwrap();
    assert_ne!(first, second);
    assert!(app.logs[0].get(second).unwrap().folded.contains("line 7"));
    app.update(key('N'));
    assert_eq!(app.zoom.as_ref().unwrap().matched, Some(first));

    app.update(key('G'));
    let z = app.zoom.clone().unwrap();
    assert_eq!((z.offset, z.follow), (0, true));
    app.update(code(KeyCode::Esc));
    assert!(app.zoom.is_none());
}

#[test]
fn help_opens_and_closes_and_swallows_other_keys() {
    let mut app = app();
    app.update(key('?'));
    assert_eq!(app.overlay, Overlay::Help(0));
    assert!(sent(&app.update(key('c'))).is_empty());
    assert_eq!(app.overlay, Overlay::Help(0));
    // Arrows scroll it (the view stops at its end).
    app.update(code(KeyCode::Down));
    app.update(code(KeyCode::Down));
    app.update(code(KeyCode::Up));
    assert_eq!(app.overlay, Overlay::Help(1));
    app.update(code(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn grid_focus_moves_within_the_layout() {
    let mut app = app();
    app.update(Msg::Engine(Event::WorkersChanged(
        (1..=4).map(|n| worker(n, None)).collect(),
    )));
    app.update(Msg::Resize(160, 48));
    // 2 × 2 at this size.
    app.update(key('l'));
    assert_eq!(app.focus, 1);
    app.update(key('j'));
    assert_eq!(app.focus, 3);
    app.update(key('l'));
    assert_eq!(app.focus, 3, "no wrap past the edge");
    app.update(key('h'));
    app.update(key('k'));
    assert_eq!(app.focus, 0);
}

#[test]
fn log_text_is_sanitised_on_arrival() {
    let mut app = app();
    log(
        &mut app,
        0,
        "\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07visible\x1b[2J",
    );
    let line = app.logs[0].tail(1).next().unwrap();
    assert_eq!(line.folded, "visible");
}

#[test]
fn a_new_attempt_is_marked_in_the_log() {
    let mut app = app();
    let mut again = batch(1, BatchStatus::Running);
    again.attempts = 2;
    again.attempt_kind = Some(crate::dbt::argv::AttemptKind::Retry);
    again.worker = Some(2);
    app.update(Msg::Engine(Event::BatchChanged(again)));
    let line = app.logs[1].tail(1).next().unwrap();
    assert_eq!(line.folded, "── attempt 2 (dbt retry) on worker 2 ──");
}

#[test]
fn reserved_and_active_connections_come_from_running_batches() {
    let mut app = app();
    assert_eq!(app.reserved(), 2);
    let mut b = app.batches[0].clone();
    b.executing = 1;
    app.update(Msg::Engine(Event::BatchChanged(b)));
    assert_eq!(app.active_connections(), 1);
}

#[test]
fn split_parts_arrive_as_new_batches() {
    let mut app = app();
    let mut part = batch(3, BatchStatus::Pending);
    part.label = "2024-03-06 stg_a".into();
    app.update(Msg::Engine(Event::BatchesAdded(vec![part])));
    assert_eq!(app.batches.len(), 4);
    assert_eq!(app.logs.len(), 4);
    log(&mut app, 3, "hello");
    assert_eq!(app.logs[3].len(), 1);
}

#[test]
fn a_terminal_lost_twice_still_stops_gently() {
    let mut app = app();
    app.update(Msg::Signal(libc::SIGHUP));
    assert!(
        sent(&app.update(Msg::Signal(libc::SIGHUP))).is_empty(),
        "a second hang-up must not skip dbt's SIGINT"
    );
}

#[test]
fn ctrl_c_after_quitting_kills_at_once() {
    let mut app = app();
    app.update(key('q'));
    app.update(key('y'));
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(
        sent(&app.update(ctrl_c)),
        [Command::Shutdown { force: true }]
    );
}

#[test]
fn scrolling_back_stays_within_a_full_view_while_output_floods_in() {
    let mut app = app();
    app.update(code(KeyCode::Enter));
    for i in 0..5000 {
        log(&mut app, 0, &format!("line {i}"));
    }
    app.update(key('g'));
    let page = usize::from(app.size.1 - 6);
    let top = app.zoom.as_ref().unwrap().offset;
    assert_eq!(top, app.logs[0].len() - page, "g shows a full first page");
    for i in 0..5000 {
        log(&mut app, 0, &format!("more {i}"));
    }
    let z = app.zoom.as_ref().unwrap();
    assert!(
        z.offset <= app.logs[0].len() - page,
        "{} lines back",
        z.offset
    );
    assert_eq!(app.logs[0].window(page, z.offset).count(), page);
}

/// `+++` faster than the engine answers: three workers more, not one (each key
/// is a change counted by the engine, not a total read from a stale screen).
#[test]
fn keys_pressed_faster_than_the_screen_updates_all_count() {
    let mut app = app();
    let all: Vec<Command> = (0..3).flat_map(|_| sent(&app.update(key('+')))).collect();
    assert_eq!(all, vec![Command::ChangeWorkers { by: 1 }; 3]);
}

/// Cancelled on worker 2, retried and run on worker 1: worker 2's pane no longer
/// shows it (it showed the batch as RUNNING in two panes).
#[test]
fn a_batch_shows_in_one_pane_only() {
    let mut app = app();
    // Worker 2 ran batch 1 and is idle now; batch 1 runs on worker 1 again.
    app.update(Msg::Engine(Event::WorkersChanged(vec![
        worker(1, None),
        worker(2, Some(1)),
    ])));
    let mut v = app.batches[1].clone();
    v.worker = Some(2);
    v.status = BatchStatus::Running;
    app.update(Msg::Engine(Event::BatchChanged(v.clone())));
    app.update(Msg::Engine(Event::WorkersChanged(vec![
        worker(1, Some(1)),
        worker(2, None),
    ])));
    v.worker = Some(1);
    app.update(Msg::Engine(Event::BatchChanged(v)));
    assert_eq!(app.pane_batch(0), Some(1));
    assert_ne!(app.pane_batch(1), Some(1), "worker 2 does not show it too");
}

/// `/gate` then `/compiled` searches for "compiled", not "gatecompiled".
#[test]
fn a_new_search_starts_empty() {
    let mut app = app();
    app.update(code(KeyCode::Enter));
    for word in ["gate", "compiled"] {
        app.update(key('/'));
        for c in word.chars() {
            app.update(key(c));
        }
        app.update(code(KeyCode::Enter));
    }
    assert_eq!(app.zoom.unwrap().query.as_deref(), Some("compiled"));
}

/// The ETA says "paused" while the queue is paused, and the elapsed clock stops
/// when the last batch has ended.
#[test]
fn the_clock_stops_when_done_and_the_eta_says_paused() {
    let mut app = app();
    app.update(Msg::Engine(Event::QueuePaused(true)));
    let screen = |app: &App| {
        let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 10)).unwrap();
        term.draw(|f| crate::tui::view::draw(f, app, &crate::tui::theme::Theme { color: false }))
            .unwrap();
        format!("{:?}", term.backend())
    };
    assert!(screen(&app).contains("eta paused"), "{}", screen(&app));
    for b in 0..app.batches.len() {
        let mut v = app.batches[b].clone();
        v.status = BatchStatus::Succeeded;
        v.worker = None;
        app.update(Msg::Engine(Event::BatchChanged(v)));
    }
    app.update(Msg::Tick(1010.0));
    app.update(Msg::Engine(Event::Idle));
    app.update(Msg::Tick(1500.0));
    assert_eq!(app.done_at, Some(1010.0));
    assert!(screen(&app).contains("elapsed 10.0s"), "{}", screen(&app));
}

/// Footer messages: a later success replaces an earlier error, messages expire,
/// `r` says what it did, and a paused queue says so.
#[test]
fn notices_are_replaced_by_success_and_expire() {
    let mut app = app();
    app.update(key('b'));
    for c in ['4', 'x'] {
        app.update(key(c));
    }
    // The prefilled budget is "2"; "24x" is not a number.
    app.update(code(KeyCode::Enter));
    assert_eq!(app.notice.as_ref().unwrap().level, Level::Error);
    app.update(Msg::Engine(Event::BudgetChanged(3)));
    let n = app.notice.clone().unwrap();
    assert_eq!(
        (n.level, n.text.as_str()),
        (Level::Info, "the budget is now 3 connections")
    );
    app.update(Msg::Tick(app.now + 60.0));
    assert!(app.notice.is_none(), "an info line goes away");
    // `r` on the failed batch (the grid's focused pane shows batch 0; use the table).
    app.update(code(KeyCode::Tab));
    app.selected = 1;
    let fx = app.update(key('r'));
    assert_eq!(sent(&fx), [Command::Retry(1)]);
    assert!(app.notice.as_ref().unwrap().text.contains("queued again"));
}

fn log_text(batch: usize, text: &str) -> Msg {
    Msg::Engine(Event::Log {
        batch,
        worker: 2,
        line: LogLine {
            level: Level::Info,
            class: None,
            text: text.into(),
            plain: true,
        },
    })
}

fn screen_text(app: &App) -> String {
    let mut term =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(app.size.0, app.size.1)).unwrap();
    term.draw(|f| crate::tui::view::draw(f, app, &crate::tui::theme::Theme { color: false }))
        .unwrap();
    format!("{:?}", term.backend())
}

/// A failed batch's zoomed log pins its failure above the log: `g` still reaches
/// the log's first line.
#[test]
fn the_zoom_of_a_failed_batch_reaches_its_first_line() {
    let mut app = app();
    for i in 0..100 {
        app.update(log_text(1, &format!("line {i:03}")));
    }
    app.update(code(KeyCode::Tab));
    app.selected = 1;
    app.update(code(KeyCode::Enter));
    app.update(key('g'));
    let text = screen_text(&app);
    assert!(text.contains("line 000"), "{text}");
    assert!(
        text.contains("compiled SQL"),
        "the failure stays pinned: {text}"
    );
}

/// At 80×24 the failure detail keeps the compiled SQL path in view, before a
/// long message.
#[test]
fn the_failure_detail_shows_the_compiled_sql_path_at_80x24() {
    let mut app = app();
    app.update(Msg::Resize(80, 24));
    let mut v = app.batches[1].clone();
    v.failing[0].message = Some("a long message ".repeat(40));
    v.failing[0].compiled_path = Some(
        "/state/batches/2024-01-13/target/compiled/herd_demo/models/staging/stg_shipments.sql"
            .into(),
    );
    app.update(Msg::Engine(Event::BatchChanged(v)));
    app.update(code(KeyCode::Tab));
    app.selected = 1;
    // The path wraps, whole, before the message.
    let rows: Vec<String> = screen_text(&app)
        .split("\",")
        .map(|r| {
            r.trim_matches(|c: char| c == '"' || c == '│' || c.is_whitespace())
                .to_string()
        })
        .collect();
    let joined = rows.join("");
    assert!(
        joined.contains(
            "/state/batches/2024-01-13/target/compiled/herd_demo/models/staging/stg_shipments.sql"
        ),
        "{rows:#?}"
    );
}

/// A long line in the zoom: cut by default, `→` scrolls it sideways, `w` wraps it.
#[test]
fn long_lines_in_the_zoom_scroll_sideways_or_wrap() {
    let mut app = app();
    app.update(Msg::Resize(80, 24));
    let long = format!("{}END-OF-LINE", "x".repeat(150));
    app.update(log_text(2, &long));
    app.update(code(KeyCode::Tab));
    app.selected = 2;
    app.update(code(KeyCode::Enter));
    assert!(!screen_text(&app).contains("END-OF-LINE"), "cut at first");
    for _ in 0..12 {
        app.update(code(KeyCode::Right));
    }
    assert_eq!(app.zoom.as_ref().unwrap().hscroll, 96);
    assert!(
        screen_text(&app).contains("END-OF-LINE"),
        "{}",
        screen_text(&app)
    );
    app.update(key('w'));
    let z = app.zoom.as_ref().unwrap();
    assert!(z.wrap && z.hscroll == 0);
    // Wrapped at 78 columns: the line's end is on its second row.
    let text = screen_text(&app);
    assert!(
        text.contains("xxEND-OF") && text.contains("│-LINE"),
        "{text}"
    );
    assert!(text.contains("WRAP"));
}

#[test]
fn a_late_cold_verdict_changes_the_mode_the_header_shows() {
    let mut a = app();
    a.info.as_mut().unwrap().mode = "warm".into();
    a.update(Msg::Engine(Event::ModeChanged {
        mode: "cold".into(),
        reason: Some("batches parse differently".into()),
    }));
    let info = a.info.as_ref().unwrap();
    assert_eq!(info.mode, "cold");
    assert!(info.mode_line().contains("batches parse differently"));
}

#[test]
fn elapsed_counts_from_the_launch_and_q_while_preparing_stops_the_preparation() {
    let mut a = App::new(1000.0, (80, 24));
    a.update(Msg::Engine(Event::Preparing(crate::engine::PrepView {
        launched_at: 940.0,
        ..Default::default()
    })));
    assert!((a.started_at - 940.0).abs() < 1e-9, "{}", a.started_at);
    let fx = a.update(key('q'));
    assert_eq!(sent(&fx), vec![Command::Shutdown { force: false }]);
}

#[test]
fn the_breakers_diagnosis_stays_until_the_queue_is_resumed_and_is_sanitised() {
    let mut a = app();
    a.update(Msg::Engine(Event::QueuePaused(true)));
    a.update(Msg::Engine(Event::BreakerTripped(
        "the last 3 attempts all failed alike (connection failure): refused\u{1b}]0;pwned\u{7}"
            .into(),
    )));
    a.update(Msg::Engine(Event::Notice {
        level: Level::Warn,
        text: "batch x: a transient fault; it runs again in 2.0s (1 of 2)".into(),
    }));
    let why = a.breaker.clone().expect("kept");
    assert!(why.contains("all failed alike"), "{why}");
    assert!(!why.contains('\u{1b}'), "sanitised: {why:?}");
    a.update(Msg::Engine(Event::QueuePaused(false)));
    assert!(a.breaker.is_none(), "resumed: the banner goes");
}
