//! dbt's `--log-format json` lines: parsed into the few events a supervisor acts
//! on, and rendered as short lines for people.
//!
//! Every line is one JSON object with `info.{name,level,msg,ts,invocation_id}` and a
//! `data` object whose fields depend on the event name. Unknown events are kept as
//! `Other` with their message, so nothing dbt says is lost.

use serde_json::Value;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(s: &str) -> Level {
        match s {
            "debug" => Level::Debug,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            _ => Level::Info,
        }
    }
}

/// The node an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRef {
    pub unique_id: String,
    pub name: String,
    pub resource_type: String,
    /// The node's file, relative to its package's resource dir (e.g. `marts/fct.sql`).
    pub path: Option<String>,
}

/// Per-node position in the run (`3 of 12`), when dbt says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub index: Option<u32>,
    pub total: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `ConcurrencyLine`: the run is about to start.
    Concurrency {
        threads: u32,
        nodes: u32,
    },
    /// `LogStartLine` / `NodeStart`: a node began executing.
    NodeStarted {
        node: NodeRef,
        pos: Position,
    },
    /// `Log*Result` / `NodeFinished`: a node finished with a status.
    NodeFinished {
        node: NodeRef,
        status: String,
        execution_time: Option<f64>,
        message: Option<String>,
        pos: Position,
    },
    /// `SkippingDetails`: a node was skipped because an upstream node failed.
    NodeSkipped {
        node: NodeRef,
        pos: Position,
    },
    /// `NoNodesForSelectionCriteria`: the selection matched nothing.
    NothingSelected,
    /// `NothingToDo` (also `dbt retry` with nothing left to retry).
    NothingToDo,
    /// `RunResultError` / `RunResultFailure` and other error-level summaries.
    Error,
    /// `CommandCompleted`: the invocation's verdict.
    Completed {
        success: bool,
    },
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbtEvent {
    pub name: String,
    pub level: Level,
    /// dbt's own message (may carry colour codes; sanitise before display).
    pub msg: String,
    pub invocation_id: Option<String>,
    pub kind: EventKind,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn u32_at(v: &Value, path: &[&str]) -> Option<u32> {
    let n = path.iter().try_fold(v, |v, k| v.get(k))?;
    n.as_u64()
        // A float count (some adapters write 3.0): whole, in range, or nothing.
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                // Whole and within u32 by the filter above.
                .map(|f| {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let whole = f as u64;
                    whole
                })
        })
        .and_then(|n| u32::try_from(n).ok())
}

fn node_ref(data: &Value) -> Option<NodeRef> {
    let ni = data.get("node_info")?;
    let unique_id = str_at(ni, &["unique_id"])?.to_string();
    let name = str_at(ni, &["node_name"])
        .map(str::to_string)
        .unwrap_or_else(|| unique_id.rsplit('.').next().unwrap_or_default().to_string());
    Some(NodeRef {
        resource_type: str_at(ni, &["resource_type"]).unwrap_or("node").to_string(),
        path: str_at(ni, &["node_path"]).map(str::to_string),
        unique_id,
        name,
    })
}

fn position(data: &Value) -> Position {
    Position {
        index: u32_at(data, &["index"]),
        total: u32_at(data, &["total"]),
    }
}

/// Parses one stdout line. `None` means the line is not a dbt JSON event (plain
/// text such as an invalid-vars message or a Python traceback).
pub fn parse_line(line: &str) -> Option<DbtEvent> {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(trimmed).ok()?;
    let info = v.get("info")?;
    let name = str_at(info, &["name"])?.to_string();
    let level = Level::parse(str_at(info, &["level"]).unwrap_or("info"));
    let msg = str_at(info, &["msg"]).unwrap_or_default().to_string();
    let invocation_id = str_at(info, &["invocation_id"]).map(str::to_string);
    let null = Value::Null;
    let data = v.get("data").unwrap_or(&null);

    let kind = match name.as_str() {
        "ConcurrencyLine" => EventKind::Concurrency {
            threads: u32_at(data, &["num_threads"]).unwrap_or(0),
            nodes: u32_at(data, &["node_count"]).unwrap_or(0),
        },
        "LogStartLine" => match node_ref(data) {
            Some(node) => EventKind::NodeStarted {
                node,
                pos: position(data),
            },
            None => EventKind::Other,
        },
        "LogModelResult" | "LogTestResult" | "LogSeedResult" | "LogSnapshotResult"
        | "LogFunctionResult" => match node_ref(data) {
            Some(node) => {
                // node_info.node_status is dbt's canonical status (success, error,
                // pass, fail, warn...); data.status is a display value on some events.
                let status = str_at(data, &["node_info", "node_status"])
                    .or_else(|| str_at(data, &["status"]))
                    .unwrap_or("unknown")
                    .to_ascii_lowercase();
                EventKind::NodeFinished {
                    node,
                    status,
                    execution_time: data.get("execution_time").and_then(Value::as_f64),
                    message: None,
                    pos: position(data),
                }
            }
            None => EventKind::Other,
        },
        "SkippingDetails" => match node_ref(data) {
            Some(node) => EventKind::NodeSkipped {
                node,
                pos: position(data),
            },
            None => EventKind::Other,
        },
        "NoNodesForSelectionCriteria" => EventKind::NothingSelected,
        "NothingToDo" => EventKind::NothingToDo,
        "RunResultError"
        | "RunResultFailure"
        | "RunResultErrorNoMessage"
        | "MainEncounteredError"
        | "GenericExceptionOnRun" => EventKind::Error,
        "CommandCompleted" => EventKind::Completed {
            success: data
                .get("success")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        _ => EventKind::Other,
    };
    Some(DbtEvent {
        name,
        level,
        msg,
        invocation_id,
        kind,
    })
}

/// How a node status reads to a person, and whether it is good news.
pub fn status_class(status: &str) -> StatusClass {
    match status {
        "success" | "pass" | "ok" => StatusClass::Good,
        "warn" => StatusClass::Warn,
        "skipped" | "skip" | "no-op" | "noop" => StatusClass::Skipped,
        _ => StatusClass::Bad,
    }
}

/// A node that ended with this status is done for good: a model, seed or
/// snapshot that succeeded has committed its relation, a test that passed (or
/// only warned) has nothing left to say. The next attempt leaves it out.
pub fn is_committed(status: &str) -> bool {
    matches!(status, "success" | "pass" | "warn")
}

/// A node that committed in an attempt, as its events say.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedNode {
    pub unique_id: String,
    pub status: String,
    pub execution_time: Option<f64>,
}

/// The nodes an attempt's captured output (its stdout: dbt's JSON log lines)
/// says ended for good, in the order they ended. A node that ended for good
/// and then again badly (a later line) is not in it.
pub fn committed_in(output: &str) -> Vec<CommittedNode> {
    let mut out: Vec<CommittedNode> = Vec::new();
    for ev in output.lines().filter_map(parse_line) {
        if let EventKind::NodeFinished {
            node,
            status,
            execution_time,
            ..
        } = ev.kind
        {
            out.retain(|c| c.unique_id != node.unique_id);
            if is_committed(&status) {
                out.push(CommittedNode {
                    unique_id: node.unique_id,
                    status,
                    execution_time,
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusClass {
    Good,
    Warn,
    Skipped,
    Bad,
}

fn pos_text(pos: Position) -> String {
    match (pos.index, pos.total) {
        (Some(i), Some(t)) => format!(" ({i}/{t})"),
        _ => String::new(),
    }
}

/// A one-line rendering for people. Meaning is carried by words (OK, ERROR, SKIP),
/// never by colour alone. `None` for debug noise nobody needs in a pane.
pub fn render(ev: &DbtEvent) -> Option<String> {
    match &ev.kind {
        EventKind::Concurrency { threads, nodes } => {
            Some(format!("running {nodes} nodes with {threads} threads"))
        }
        EventKind::NodeStarted { node, pos } => Some(format!(
            "START {} {}{}",
            node.resource_type,
            node.name,
            pos_text(*pos)
        )),
        EventKind::NodeFinished {
            node,
            status,
            execution_time,
            pos,
            ..
        } => {
            let word = match status.as_str() {
                "success" => "OK".to_string(),
                other => other.to_ascii_uppercase(),
            };
            let time = execution_time
                .map(|t| format!(" in {t:.2}s"))
                .unwrap_or_default();
            Some(format!(
                "{word} {} {}{time}{}",
                node.resource_type,
                node.name,
                pos_text(*pos)
            ))
        }
        EventKind::NodeSkipped { node, pos } => Some(format!(
            "SKIP {} {}{}",
            node.resource_type,
            node.name,
            pos_text(*pos)
        )),
        EventKind::NothingSelected => Some(format!("NOTHING SELECTED: {}", ev.msg)),
        EventKind::NothingToDo => Some(format!("nothing to do: {}", ev.msg)),
        EventKind::Completed { success } => Some(if *success {
            "dbt finished: success".into()
        } else {
            "dbt finished: failure".into()
        }),
        EventKind::Error => Some(ev.msg.clone()),
        EventKind::Other => match ev.level {
            Level::Debug => None,
            _ if ev.msg.trim().is_empty() => None,
            _ => Some(ev.msg.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, level: &str, data: &Value) -> String {
        serde_json::json!({
            "info": {"name": name, "level": level, "msg": "m", "invocation_id": "inv-1",
                     "ts": "2024-01-01T00:00:00Z", "code": "Q000", "pid": 1, "thread": "MainThread", "extra": {}},
            "data": data
        })
        .to_string()
    }

    #[test]
    fn plain_text_is_not_an_event() {
        assert!(parse_line("Traceback (most recent call last):").is_none());
        assert!(parse_line("{not json").is_none());
        assert!(parse_line("{\"no_info\": 1}").is_none());
    }

    #[test]
    fn model_result_uses_node_status() {
        let l = line(
            "LogModelResult",
            "info",
            &serde_json::json!({"status": "OK", "execution_time": 0.5, "index": 3, "total": 9,
              "node_info": {"unique_id": "model.p.fct", "node_name": "fct", "resource_type": "model",
                            "node_status": "success", "node_path": "marts/fct.sql"}}),
        );
        let ev = parse_line(&l).unwrap();
        assert_eq!(ev.invocation_id.as_deref(), Some("inv-1"));
        let EventKind::NodeFinished {
            node,
            status,
            execution_time,
            pos,
            ..
        } = &ev.kind
        else {
            panic!("{ev:?}")
        };
        assert_eq!(node.unique_id, "model.p.fct");
        assert_eq!(node.path.as_deref(), Some("marts/fct.sql"));
        assert_eq!(status, "success");
        assert_eq!(*execution_time, Some(0.5));
        assert_eq!((pos.index, pos.total), (Some(3), Some(9)));
        assert_eq!(render(&ev).unwrap(), "OK model fct in 0.50s (3/9)");
    }

    #[test]
    fn concurrency_and_completion() {
        let ev = parse_line(&line(
            "ConcurrencyLine",
            "info",
            &serde_json::json!({"num_threads": 4, "node_count": 12}),
        ))
        .unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Concurrency {
                threads: 4,
                nodes: 12
            }
        );
        let ev = parse_line(&line(
            "CommandCompleted",
            "debug",
            &serde_json::json!({"success": false}),
        ))
        .unwrap();
        assert_eq!(ev.kind, EventKind::Completed { success: false });
    }

    #[test]
    fn debug_noise_is_not_rendered() {
        let ev = parse_line(&line("SQLQuery", "debug", &serde_json::json!({}))).unwrap();
        assert_eq!(ev.level, Level::Debug);
        assert_eq!(render(&ev), None);
    }
}

/// Against lines captured from real dbt 1.11 runs of the demo project
/// (`tests/fixtures/events/`, see the README there).
#[cfg(test)]
mod captured {
    use super::*;

    fn events(name: &str) -> Vec<DbtEvent> {
        let path = format!(
            "{}/tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines().filter_map(parse_line).collect()
    }

    fn count(evs: &[DbtEvent], f: impl Fn(&EventKind) -> bool) -> usize {
        evs.iter().filter(|e| f(&e.kind)).count()
    }

    #[test]
    fn successful_build() {
        let evs = events("success.jsonl");
        assert!(
            evs.iter()
                .all(|e| e.invocation_id.as_deref() == evs[0].invocation_id.as_deref())
        );
        assert!(
            evs.iter()
                .any(|e| matches!(e.kind, EventKind::Concurrency { nodes: 46, .. }))
        );
        assert_eq!(
            count(&evs, |k| matches!(k, EventKind::NodeStarted { .. })),
            46
        );
        let finished: Vec<&EventKind> = evs
            .iter()
            .map(|e| &e.kind)
            .filter(|k| matches!(k, EventKind::NodeFinished { .. }))
            .collect();
        assert_eq!(finished.len(), 46);
        let customers = finished
            .iter()
            .find(|k| matches!(k, EventKind::NodeFinished { node, .. } if node.name == "stg_customers"))
            .unwrap();
        let EventKind::NodeFinished {
            node,
            status,
            execution_time,
            pos,
            ..
        } = customers
        else {
            unreachable!()
        };
        assert_eq!(node.unique_id, "model.herd_demo.stg_customers");
        assert_eq!(node.path.as_deref(), Some("staging/stg_customers.sql"));
        assert_eq!(status, "success", "node_status, not the display value OK");
        assert!(execution_time.is_some_and(|t| t > 0.0));
        assert!(pos.index.is_some_and(|i| (1..=46).contains(&i)));
        assert_eq!(pos.total, Some(46));
        let passes = finished
            .iter()
            .filter(|k| matches!(k, EventKind::NodeFinished { status, .. } if status == "pass"))
            .count();
        assert_eq!(passes, 32);
    }

    #[test]
    fn failed_build() {
        let evs = events("failure.jsonl");
        let errors: Vec<&DbtEvent> = evs
            .iter()
            .filter(
                |e| matches!(&e.kind, EventKind::NodeFinished { status, .. } if status == "error"),
            )
            .collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].level, Level::Error);
        assert!(
            render(errors[0])
                .unwrap()
                .starts_with("ERROR model stg_shipments")
        );
        assert_eq!(
            count(&evs, |k| matches!(k, EventKind::NodeSkipped { .. })),
            8
        );
        let summary = evs.iter().find(|e| e.name == "RunResultError").unwrap();
        assert_eq!(summary.kind, EventKind::Error);
        assert!(summary.msg.contains("have not landed"), "{}", summary.msg);
    }

    #[test]
    fn nothing_selected_and_nothing_to_do() {
        let evs = events("nothing_selected.jsonl");
        assert_eq!(count(&evs, |k| *k == EventKind::NothingSelected), 1);
        let evs = events("retry_nothing_to_do.jsonl");
        assert_eq!(count(&evs, |k| *k == EventKind::NothingToDo), 1);
    }

    #[test]
    fn interrupted_build_reports_an_error() {
        let evs = events("interrupted.jsonl");
        assert!(
            evs.iter()
                .any(|e| e.name == "LogCancelLine" && e.level == Level::Error)
        );
        assert!(evs.iter().any(|e| e.kind == EventKind::Error));
    }
}
