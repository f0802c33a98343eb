//! Warm or cold. A warm worker parses once and reuses the manifest for every
//! batch, so anything dbt renders at parse time (vars or env in `config()`,
//! `enabled=`, sources.yml, the database name) keeps the values of that parse.
//! Two parses that differ only in the batch (the first and the last batch's
//! vars and `{batch}` values) are compared node by node; in `auto` the first
//! batch runs on worker 1 meanwhile (see `verdict`). What the options and the
//! profile already tell (`{batch}` in an env var the profile reads) is decided
//! without a parse.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::launcher::{WarmLauncher, WarmSetup, workers_dir};
use super::process::{install, interpreter};
use super::slot::Leave;
use super::verdict::{self, Judge, Pending, Second};
use crate::cli::ModeArg;
use crate::config::RunSettings;
use crate::engine::launcher::{Launcher, ProcessLauncher};
use crate::engine::messages::WarmView;
use crate::engine::parse::SharedParse;
use crate::plan::Batch;
use crate::usage;

/// How batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Warm,
    Cold,
}

/// The mode, and why when it is not the one asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModeChoice {
    pub mode: Mode,
    pub reason: Option<String>,
}

/// What the engine runs batches with.
pub(crate) struct Runner {
    pub choice: ModeChoice,
    pub launcher: Arc<dyn Launcher>,
    /// The warm workers' states, for the faces.
    pub warm_status: Option<mpsc::Receiver<(usize, WarmView)>>,
    /// The parse check's verdict, when the first batch need not wait for it.
    pub pending: Option<Pending>,
}

pub(crate) fn cold(reason: Option<String>) -> Runner {
    Runner {
        choice: ModeChoice {
            mode: Mode::Cold,
            reason,
        },
        launcher: Arc::new(ProcessLauncher),
        warm_status: None,
        pending: None,
    }
}

/// Picks the mode and starts what it needs. With `--mode warm`, a reason not to
/// run warm is a usage error; with `auto` it is a line and a cold run.
/// What the run asks of the choice.
pub(crate) struct Choice<'a> {
    pub requested: ModeArg,
    pub recycle: u32,
    /// Partial parse files made while resolving the plan, to start from.
    pub made: &'a [SharedParse],
}

pub(crate) async fn choose(
    settings: &RunSettings,
    plan: &[Batch],
    state_dir: &Path,
    choice: Choice<'_>,
) -> color_eyre::Result<Runner> {
    let Choice {
        requested,
        recycle,
        made,
    } = choice;
    if requested == ModeArg::Cold {
        return Ok(cold(None));
    }
    let (Some(first), Some(last)) = (plan.first(), plan.last()) else {
        return Ok(cold(None));
    };
    let refuse = |why: String| -> color_eyre::Result<Runner> {
        if requested == ModeArg::Warm {
            return Err(usage!("--mode warm: {why}").into());
        }
        Ok(cold(Some(why)))
    };
    if plan.len() > 1
        && let Some(key) = crate::graph::warehouse::batch_env_in_profile(settings)
    {
        // Known from the options and profiles.yml alone: no parse needed to say so.
        return refuse(format!(
            "{key} uses {{batch}} and the profile reads it, so each batch has its own \
             warehouse, which a worker's one parse cannot follow: use {{worker}} for warm workers"
        ));
    }
    let python = match interpreter(&settings.dbt) {
        Ok(p) => p,
        Err(e) => return refuse(format!("warm workers need dbt's Python: {e}")),
    };
    let dir = workers_dir(state_dir);
    let program = install(&dir).map_err(|e| {
        color_eyre::eyre::eyre!("cannot write the worker program to {}: {e}", dir.display())
    })?;
    let (status_tx, status_rx) = mpsc::channel(256);
    let setup = WarmSetup {
        settings: settings.clone(),
        interpreter: python,
        program,
        dir: dir.clone(),
        state_dir: state_dir.to_path_buf(),
        parse_batch: first.clone(),
        recycle,
        status: status_tx,
        seeds: made.to_vec(),
    };
    let a = setup.slot(1, first);
    // Worker 2 parses anyway: with the last batch's inputs it is the check's
    // second parse, when nothing in its environment but its number differs
    // from worker 1's. Otherwise the check parses with worker 1's environment,
    // in its own dirs, and says nothing to the faces.
    let second_is_worker_2 =
        settings.workers > 1 && !settings.env.iter().any(|t| t.value.contains("{worker}"));
    if plan.len() == 1 {
        return match a.start(false, &mut Leave::never()).await {
            Ok((w, _)) => Ok(warm_runner(setup, [(1, w)].into(), status_rx, None)),
            Err(e) => refuse(format!("the warm worker could not start: {e}")),
        };
    }
    let b = if second_is_worker_2 {
        setup.slot(2, last)
    } else {
        let mut b = setup.slot_in(1, last, dir.join("check"));
        b.status = mpsc::channel(1).0;
        b
    };
    let second = Second::start(b);
    let (wa, digest) = match a.start(true, &mut Leave::never()).await {
        Ok((w, d)) => (w, d.unwrap_or_default()),
        Err(e) => {
            second.abandon(settings.grace_term).await;
            return refuse(format!("the warm worker could not start: {e}"));
        }
    };
    let judge = Judge {
        digest,
        first: first.id.clone(),
        last: last.id.clone(),
        hint: verdict::hint(settings),
        grace: settings.grace_term,
    };
    if requested == ModeArg::Warm {
        // Asked for warm: a difference is an error before any batch runs.
        return match second.judge(judge, second_is_worker_2).await {
            (Ok(()), wb) => {
                let ready = std::iter::once((1, wa)).chain(wb.map(|w| (2, w))).collect();
                Ok(warm_runner(setup, ready, status_rx, None))
            }
            (Err(why), _) => {
                super::slot::retire(wa, settings.grace_term).await;
                refuse(why)
            }
        };
    }
    // The first batch may run on worker 1 now; the rest wait for the verdict.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = Pending {
        batch: first.id.clone(),
        verdict: rx,
    };
    let launcher = WarmLauncher::new(setup, [(1, wa)].into());
    launcher.await_second(second, judge, second_is_worker_2.then_some(2), tx);
    Ok(Runner {
        choice: ModeChoice {
            mode: Mode::Warm,
            reason: None,
        },
        launcher: Arc::new(launcher),
        warm_status: Some(status_rx),
        pending: Some(pending),
    })
}

fn warm_runner(
    setup: WarmSetup,
    ready: std::collections::BTreeMap<usize, super::slot::Warm>,
    status: mpsc::Receiver<(usize, WarmView)>,
    pending: Option<Pending>,
) -> Runner {
    Runner {
        choice: ModeChoice {
            mode: Mode::Warm,
            reason: None,
        },
        launcher: Arc::new(WarmLauncher::new(setup, ready)),
        warm_status: Some(status),
        pending,
    }
}

/// Fields of a node that a parse bakes in.
const FIELDS: [&str; 9] = [
    "database",
    "schema",
    "alias",
    "config",
    "depends_on",
    "refs",
    "sources",
    "checksum",
    "enabled",
];

/// The first node and field where two parses' digests differ, in words.
pub(crate) fn first_difference(a: &Map<String, Value>, b: &Map<String, Value>) -> Option<String> {
    let ids: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for id in ids {
        let (Some(na), Some(nb)) = (a.get(id), b.get(id)) else {
            let which = if a.contains_key(id) { "first" } else { "last" };
            return Some(format!("{id} exists only in the {which} batch's parse"));
        };
        for field in FIELDS {
            let (va, vb) = (&na[field], &nb[field]);
            if va != vb {
                let (path, x, y) = deepest(field.to_string(), va, vb);
                return Some(format!("{id}: {path} is {} and {}", shown(x), shown(y)));
            }
        }
    }
    None
}

/// Follows two differing values into the first key where they differ.
fn deepest<'a>(path: String, a: &'a Value, b: &'a Value) -> (String, &'a Value, &'a Value) {
    if let (Value::Object(ma), Value::Object(mb)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for k in keys {
            let (x, y) = (
                ma.get(k).unwrap_or(&Value::Null),
                mb.get(k).unwrap_or(&Value::Null),
            );
            if x != y {
                return deepest(format!("{path}.{k}"), x, y);
            }
        }
    }
    (path, a, b)
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(v: &serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equal_parses_have_no_difference_and_a_changed_config_is_named() {
        let node = |enabled: bool, db: &str| {
            serde_json::json!({"database": db, "schema": "main", "alias": "m",
                "config": {"enabled": enabled, "materialized": "table"},
                "depends_on": {"nodes": []}, "refs": [], "sources": [], "checksum": {"sha256": "x"},
                "enabled": enabled})
        };
        let a = digest(
            &serde_json::json!({"model.p.m": node(true, "w1"), "model.p.n": node(true, "w1")}),
        );
        assert_eq!(first_difference(&a, &a.clone()), None);
        let b = digest(
            &serde_json::json!({"model.p.m": node(false, "w1"), "model.p.n": node(true, "w1")}),
        );
        assert_eq!(
            first_difference(&a, &b).unwrap(),
            "model.p.m: config.enabled is true and false"
        );
        let c = digest(
            &serde_json::json!({"model.p.m": node(true, "batch2"), "model.p.n": node(true, "w1")}),
        );
        assert_eq!(
            first_difference(&a, &c).unwrap(),
            "model.p.m: database is \"w1\" and \"batch2\""
        );
        let d = digest(&serde_json::json!({"model.p.m": node(true, "w1")}));
        assert!(
            first_difference(&a, &d)
                .unwrap()
                .contains("model.p.n exists only in the first")
        );
    }
}
