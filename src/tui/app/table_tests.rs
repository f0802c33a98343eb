//! The batch table at the size of a real backfill: filter, sort, jumps to
//! failures, marks and what bulk actions send; clicks and the wheel; the y/n
//! questions; opening a batch outside.

use crossterm::event::{KeyCode, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::tests::{code, info, key, sent, worker};
use super::*;
use crate::engine::messages::FailingNode;

/// `n` daily windows from 2024-01-01 on two workers: windows 10, 150 and 290
/// failed, 0..5 succeeded (5 s + i each), 5 runs on worker 1, the rest pending
/// in plan order.
fn backfill(n: usize) -> App {
    let mut app = App::new(1000.0, (120, 40));
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let batches: Vec<BatchView> = (0..n)
        .map(|i| {
            let day = (start + chrono::Days::new(i as u64)).to_string();
            let status = match i {
                10 | 150 | 290 => BatchStatus::Failed,
                0..5 => BatchStatus::Succeeded,
                5 => BatchStatus::Running,
                _ => BatchStatus::Pending,
            };
            let failed = status == BatchStatus::Failed;
            BatchView {
                index: i,
                id: day.clone(),
                label: day,
                status,
                attempts: u32::from(status != BatchStatus::Pending),
                duration_s: if status == BatchStatus::Succeeded {
                    5.0 + i as f64
                } else {
                    0.0
                },
                worker: (status == BatchStatus::Running).then_some(1),
                error: failed.then(|| "model.p.daily: shipments have not landed".to_string()),
                failing: if failed {
                    vec![FailingNode {
                        unique_id: "model.p.daily".into(),
                        status: "error".into(),
                        message: Some("shipments have not landed".into()),
                        compiled_path: Some(format!(
                            "/state/batches/{i}/target/compiled/daily.sql"
                        )),
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }
        })
        .collect();
    app.update(Msg::Engine(Event::Started {
        info: info(),
        batches,
        workers: vec![worker(1, Some(5)), worker(2, None)],
    }));
    app.update(Msg::Engine(Event::QueueChanged(
        (6..n)
            .filter(|&i| i != 10 && i != 150 && i != 290)
            .collect(),
    )));
    app
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(c));
    }
}

fn notice(app: &App) -> String {
    app.notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

#[test]
fn slash_in_the_table_filters_rows_as_typed_and_esc_clears_then_goes_back() {
    let mut app = backfill(300);
    app.update(code(KeyCode::Tab));
    app.update(key('/'));
    typed(&mut app, "fail");
    // Applied while typing: the three failed windows, by status word.
    assert_eq!(app.rows(), vec![10, 150, 290]);
    assert!(
        app.rows().contains(&app.selected),
        "the selection follows the filter"
    );
    app.update(code(KeyCode::Enter));
    assert_eq!(app.table.filter.as_deref(), Some("fail"));
    assert!(notice(&app).contains("3 rows match"), "{}", notice(&app));
    // By id, and by error text.
    app.update(key('/'));
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    typed(&mut app, "2024-02");
    app.update(code(KeyCode::Enter));
    assert_eq!(app.rows().len(), 29);
    app.update(key('/'));
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    typed(&mut app, "LANDED");
    app.update(code(KeyCode::Enter));
    assert_eq!(app.rows(), vec![10, 150, 290]);
    // Esc: the filter first, then back to the grid.
    app.update(code(KeyCode::Esc));
    assert_eq!(app.table.filter, None);
    assert_eq!(app.rows().len(), 300);
    assert_eq!(app.screen, Screen::Table);
    app.update(code(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Grid);
}

#[test]
fn esc_in_the_filter_editor_drops_the_filter() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.update(key('/'));
    typed(&mut app, "fail");
    assert_eq!(app.rows(), vec![10]);
    app.update(code(KeyCode::Esc));
    assert_eq!(app.table.filter, None);
    assert_eq!(app.rows().len(), 20);
}

#[test]
fn o_cycles_the_sort_through_id_duration_status_and_back() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    // Queue order: plan order, pending places filled in the queue's order.
    app.update(Msg::Engine(Event::QueueChanged(vec![
        19, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18,
    ])));
    assert_eq!(app.rows()[..7], [0, 1, 2, 3, 4, 5, 19]);
    app.update(key('o'));
    assert_eq!(app.table.sort, SortKey::Id);
    assert_eq!(app.rows(), (0..20).collect::<Vec<_>>());
    assert!(notice(&app).contains("sorted by id"));
    app.update(key('o'));
    assert_eq!(app.table.sort, SortKey::Duration);
    assert_eq!(app.rows()[..5], [4, 3, 2, 1, 0], "longest first");
    app.update(key('o'));
    assert_eq!(app.table.sort, SortKey::Status);
    assert_eq!(app.rows()[0], 10, "failed first");
    assert_eq!(app.rows()[1], 5, "then running");
    app.update(key('o'));
    assert_eq!(app.table.sort, SortKey::Queue);
}

#[test]
fn brackets_jump_between_failed_batches_and_wrap_around() {
    let mut app = backfill(300);
    // From the grid (no pane shows a failure): the table opens on the first.
    app.update(key(']'));
    assert_eq!(app.screen, Screen::Table);
    assert_eq!(app.selected, 10);
    app.update(key(']'));
    assert_eq!(app.selected, 150);
    app.update(key(']'));
    assert_eq!(app.selected, 290);
    app.update(key(']'));
    assert_eq!(app.selected, 10, "wraps to the first");
    app.update(key('['));
    assert_eq!(app.selected, 290, "and back");
    // The table scrolled to show it.
    assert!(app.table.scroll > 200, "{}", app.table.scroll);
}

#[test]
fn in_the_grid_a_bracket_focuses_the_pane_of_a_failed_batch() {
    let mut app = backfill(20);
    let mut failed = app.batches[10].clone();
    failed.worker = Some(2);
    app.update(Msg::Engine(Event::BatchChanged(failed)));
    app.update(Msg::Engine(Event::WorkersChanged(vec![
        worker(1, Some(5)),
        worker(2, None),
    ])));
    assert_eq!(app.pane_batch(1), Some(10));
    app.update(key(']'));
    assert_eq!((app.screen, app.focus), (Screen::Grid, 1));
}

#[test]
fn space_marks_and_moves_down_v_marks_what_shows_and_r_retries_the_marked_failures() {
    let mut app = backfill(300);
    app.update(code(KeyCode::Tab));
    app.update(key('/'));
    typed(&mut app, "fail");
    app.update(code(KeyCode::Enter));
    app.update(key('V'));
    assert_eq!(
        app.table.marks.iter().copied().collect::<Vec<_>>(),
        [10, 150, 290]
    );
    assert!(notice(&app).contains("3 rows marked"), "{}", notice(&app));
    // Two more that cannot be retried: a running and a pending one.
    app.update(code(KeyCode::Esc));
    app.selected = 5;
    app.update(key(' '));
    assert_eq!(app.selected, 6, "space moves down");
    app.update(key(' '));
    assert_eq!(app.table.marks.len(), 5);
    let fx = app.update(key('r'));
    assert_eq!(
        sent(&fx),
        [Command::Retry(10), Command::Retry(150), Command::Retry(290)]
    );
    assert_eq!(notice(&app), "retrying 3 of 5 marked (2 did not apply)");
    assert!(app.table.marks.is_empty(), "marks are spent by the action");
}

#[test]
fn v_again_unmarks_the_rows_that_show() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.update(key('V'));
    assert_eq!(app.table.marks.len(), 20);
    app.update(key('V'));
    assert!(app.table.marks.is_empty());
    // Space on a marked row unmarks it.
    app.selected = 3;
    app.update(key(' '));
    app.selected = 3;
    app.update(key(' '));
    assert!(app.table.marks.is_empty());
}

#[test]
fn cancelling_marked_rows_asks_when_one_runs() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.table.marks.extend([5, 6, 7, 0]);
    assert!(sent(&app.update(key('c'))).is_empty());
    let Overlay::Confirm(c) = &app.overlay else {
        panic!("{:?}", app.overlay)
    };
    assert!(
        c.question.contains("3 marked batches (1 running)"),
        "{}",
        c.question
    );
    assert_eq!(
        sent(&app.update(key('y'))),
        [Command::Cancel(5), Command::Cancel(6), Command::Cancel(7)]
    );
    assert_eq!(notice(&app), "cancelling 3 of 4 marked (1 did not apply)");
}

#[test]
fn r_on_a_succeeded_batch_asks_before_rerunning_it() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.selected = 2;
    assert!(sent(&app.update(key('r'))).is_empty());
    let Overlay::Confirm(c) = &app.overlay else {
        panic!("{:?}", app.overlay)
    };
    assert_eq!(c.question, "rerun 2024-01-03, which succeeded? (y / n)");
    assert_eq!(sent(&app.update(key('y'))), [Command::Rerun(2)]);
    // Marked: failures are retried and successes rerun, after one question.
    app.table.marks.extend([1, 10]);
    assert!(sent(&app.update(key('r'))).is_empty());
    assert_eq!(
        sent(&app.update(key('y'))),
        [Command::Retry(10), Command::Rerun(1)]
    );
    // n keeps everything as it was.
    app.update(key('r'));
    assert!(sent(&app.update(key('n'))).is_empty());
    assert_eq!(notice(&app), "nothing done");
}

#[test]
fn editing_marked_rows_applies_only_the_fields_that_changed() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    for b in [7, 8] {
        let mut v = app.batches[b].clone();
        v.select = Some(format!("model_{b}"));
        v.vars = format!("{{\"day\": {b}}}");
        app.update(Msg::Engine(Event::BatchChanged(v)));
    }
    // 5 runs: it is left out.
    app.table.marks.extend([5, 7, 8]);
    app.selected = 7;
    app.update(key('e'));
    let Overlay::Input(input) = &app.overlay else {
        panic!("{:?}", app.overlay)
    };
    assert!(matches!(&input.purpose, Purpose::EditMarked { batches, .. } if batches == &[7, 8]));
    // Only the selector changes: each keeps its own vars.
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    typed(&mut app, "daily+");
    let fx = app.update(code(KeyCode::Enter));
    assert_eq!(
        sent(&fx),
        [
            Command::EditBatch {
                batch: 7,
                select: Some("daily+".into()),
                vars: "{\"day\": 7}".into()
            },
            Command::EditBatch {
                batch: 8,
                select: Some("daily+".into()),
                vars: "{\"day\": 8}".into()
            },
        ]
    );
    // Nothing changed: nothing sent.
    app.table.marks.extend([7, 8]);
    app.update(key('e'));
    assert!(sent(&app.update(code(KeyCode::Enter))).is_empty());
    assert_eq!(notice(&app), "nothing changed");
}

#[test]
fn moving_marked_rows_keeps_their_order_in_the_queue() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.table.marks.extend([9, 7, 0]);
    let fx = app.update(key('K'));
    assert_eq!(
        sent(&fx),
        [
            Command::MoveBatch { batch: 7, up: true },
            Command::MoveBatch { batch: 9, up: true }
        ]
    );
    app.table.marks.extend([9, 7]);
    let fx = app.update(key('J'));
    assert_eq!(
        sent(&fx),
        [
            Command::MoveBatch {
                batch: 9,
                up: false
            },
            Command::MoveBatch {
                batch: 7,
                up: false
            }
        ]
    );
}

fn mouse(kind: MouseEventKind, column: u16, row: u16, at: f64) -> Msg {
    Msg::Mouse {
        event: MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        },
        at,
    }
}

#[test]
fn a_click_focuses_a_pane_and_a_double_click_zooms_it() {
    let mut app = backfill(20);
    // Two panes one above the other at 120×40: the lower one starts at line 21.
    let down = MouseEventKind::Down(MouseButton::Left);
    app.update(mouse(down, 70, 25, 1.0));
    assert_eq!(app.focus, 1);
    app.update(mouse(down, 10, 10, 2.0));
    assert_eq!(app.focus, 0);
    assert!(app.zoom.is_none());
    app.update(mouse(down, 10, 10, 2.2));
    assert_eq!(app.zoom.as_ref().map(|z| z.batch), Some(5));
    // The wheel scrolls the zoomed log.
    for i in 0..50 {
        app.update(Msg::Engine(Event::Log {
            batch: 5,
            worker: 1,
            line: crate::engine::LogLine {
                level: Level::Info,
                class: None,
                text: format!("line {i}"),
                plain: true,
            },
        }));
    }
    app.update(mouse(MouseEventKind::ScrollUp, 10, 10, 3.0));
    let z = app.zoom.as_ref().unwrap();
    assert_eq!((z.offset, z.follow), (3, false));
}

#[test]
fn a_click_on_a_table_row_selects_its_batch_even_when_scrolled() {
    let mut app = backfill(300);
    app.update(code(KeyCode::Tab));
    let down = MouseEventKind::Down(MouseButton::Left);
    // Header 3 lines, the table's border and its header: row 0 is line 5.
    app.update(mouse(down, 20, 5, 1.0));
    assert_eq!(app.selected, 0);
    app.update(mouse(down, 20, 8, 2.0));
    assert_eq!(app.selected, 3);
    // Far down the table: the click still lands on the row drawn there.
    app.update(key('G'));
    assert_eq!(app.selected, 299);
    let scroll = app.table.scroll;
    assert!(scroll > 0);
    app.update(mouse(down, 20, 6, 3.0));
    assert_eq!(app.selected, app.rows()[scroll + 1]);
    // The wheel moves the selection.
    app.update(mouse(MouseEventKind::ScrollDown, 20, 6, 4.0));
    assert_eq!(app.selected, app.rows()[scroll + 2]);
    // Below the last row: nothing.
    let before = app.selected;
    app.update(mouse(down, 20, 39, 5.0));
    assert_eq!(app.selected, before);
}

#[test]
fn v_pages_every_attempt_s_raw_output_and_e_edits_the_failing_sql() {
    let mut app = backfill(20);
    app.update(code(KeyCode::Tab));
    app.selected = 10;
    let mut v = app.batches[10].clone();
    v.attempts = 2;
    app.update(Msg::Engine(Event::BatchChanged(v)));
    let fx = app.update(key('v'));
    let files: Vec<String> = match fx.as_slice() {
        [Effect::Page(files)] => files.iter().map(|f| f.display().to_string()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        files,
        [
            "/state/batches/2024-01-11/attempt-1.stdout.log",
            "/state/batches/2024-01-11/attempt-1.stderr.log",
            "/state/batches/2024-01-11/attempt-2.stdout.log",
            "/state/batches/2024-01-11/attempt-2.stderr.log",
        ]
    );
    assert_eq!(
        app.update(key('E')),
        [Effect::Edit(
            "/state/batches/10/target/compiled/daily.sql".into()
        )]
    );
    // A batch that has not run has neither.
    app.selected = 12;
    assert!(app.update(key('v')).is_empty());
    assert!(notice(&app).contains("has not run yet"));
    assert!(app.update(key('E')).is_empty());
    assert!(notice(&app).contains("no failing node"));
}

#[test]
fn a_budget_too_large_for_a_number_says_so() {
    let mut app = backfill(3);
    app.update(key('b'));
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    typed(&mut app, "999999999999999999999");
    assert!(sent(&app.update(code(KeyCode::Enter))).is_empty());
    assert!(notice(&app).contains("too large"), "{}", notice(&app));
}

#[test]
fn idle_workers_held_by_a_full_budget_are_counted() {
    let mut app = backfill(20);
    // info(): 2 threads a batch, budget 4; one batch runs: room for one more.
    assert_eq!(app.held_by_budget(), 0);
    app.update(Msg::Engine(Event::BudgetChanged(3)));
    assert_eq!(app.held_by_budget(), 1, "worker 2 idles while batches wait");
    app.update(Msg::Engine(Event::QueuePaused(true)));
    assert_eq!(
        app.held_by_budget(),
        0,
        "a paused queue holds it, not the budget"
    );
}

fn with_history(app: &mut App, b: usize) {
    use crate::engine::messages::{AttemptOutcome, AttemptView, HistoryKind};
    let mut v = app.batches[b].clone();
    v.history = vec![
        AttemptView {
            number: 1,
            kind: HistoryKind::Run,
            worker: 1,
            started_at: 900.0,
            duration_s: Some(4.2),
            outcome: AttemptOutcome::Failed,
            failure_class: None,
            command: Some(
                "DBT_ENV_CUSTOM_ENV_HERD_BATCH=2024-01-11 dbt build --vars '{\"a\": 1}'".into(),
            ),
        },
        AttemptView {
            number: 2,
            kind: HistoryKind::Retry,
            worker: 2,
            started_at: 950.0,
            duration_s: Some(1.5),
            outcome: AttemptOutcome::Failed,
            failure_class: None,
            command: Some("DBT_ENV_CUSTOM_ENV_HERD_BATCH=2024-01-11 dbt retry".into()),
        },
    ];
    v.attempts = 2;
    app.update(Msg::Engine(Event::BatchChanged(v)));
}

#[test]
fn y_shows_the_last_attempt_s_command_and_arrows_step_through_the_others() {
    let mut app = backfill(20);
    with_history(&mut app, 10);
    app.update(code(KeyCode::Tab));
    app.selected = 10;
    app.update(key('y'));
    assert_eq!(
        app.overlay,
        Overlay::Command {
            batch: 10,
            attempt: 1
        }
    );
    app.update(code(KeyCode::Left));
    assert_eq!(
        app.overlay,
        Overlay::Command {
            batch: 10,
            attempt: 0
        }
    );
    app.update(code(KeyCode::Left));
    assert_eq!(
        app.overlay,
        Overlay::Command {
            batch: 10,
            attempt: 0
        }
    );
    app.update(code(KeyCode::Right));
    app.update(code(KeyCode::Right));
    assert_eq!(
        app.overlay,
        Overlay::Command {
            batch: 10,
            attempt: 1
        }
    );
    // Any other key closes it and does nothing else.
    assert!(sent(&app.update(key('r'))).is_empty());
    assert_eq!(app.overlay, Overlay::None);
    // A batch that never ran has no command.
    app.selected = 12;
    app.update(key('y'));
    assert_eq!(app.overlay, Overlay::None);
    assert!(notice(&app).contains("has not run yet"));
}

#[test]
fn the_detail_lists_each_attempt_with_kind_worker_duration_and_outcome() {
    let mut app = backfill(20);
    with_history(&mut app, 10);
    let rows = crate::tui::attempts::lines(&app.batches[10], app.now);
    assert_eq!(rows.len(), 2);
    assert!(rows[0].starts_with("#1  run   w1 "), "{}", rows[0]);
    assert!(rows[0].ends_with("4.2s  failed"), "{}", rows[0]);
    assert!(rows[1].starts_with("#2  retry w2 "), "{}", rows[1]);
    // The table makes room for them above the failure.
    let body = crate::tui::layout::body_area(120, 40);
    let with = crate::tui::layout::table_layout(body, Some(&app.batches[10]));
    let mut plain = app.batches[10].clone();
    plain.history.clear();
    let without = crate::tui::layout::table_layout(body, Some(&plain));
    assert_eq!(with.detail.height, without.detail.height + 2);
}
