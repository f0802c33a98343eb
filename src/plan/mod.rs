//! The plan: which batches a run is made of. Pure; no I/O.
//!
//! A batch is one dbt invocation's worth of work: a selector, a backfill window
//! turned into vars, or both. Batch ids are derived from what the batch runs (not
//! from its position), so that a resumed run finds the same batch under the same
//! id even if the plan around it changed.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{UsageError, UsageResult};
use crate::usage;

pub(crate) mod file;
mod words;

pub(crate) use words::{DbtCommand, WindowAs};

/// A window length for `--step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Days(u32),
    Weeks(u32),
    Months(u32),
}

impl FromStr for Step {
    type Err = UsageError;

    fn from_str(s: &str) -> UsageResult<Step> {
        let bad =
            || usage!("invalid --step '{s}': expected Nd, Nw or Nmo with N ≥ 1 (e.g. 1d, 2w, 1mo)");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        let n: u32 = num.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(usage!("invalid --step '{s}': the step must be at least 1"));
        }
        match unit {
            "d" => Ok(Step::Days(n)),
            "w" => Ok(Step::Weeks(n)),
            "mo" => Ok(Step::Months(n)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Days(n) => write!(f, "{n}d"),
            Step::Weeks(n) => write!(f, "{n}w"),
            Step::Months(n) => write!(f, "{n}mo"),
        }
    }
}

impl Step {
    fn advance(self, from: NaiveDate) -> Option<NaiveDate> {
        match self {
            Step::Days(n) => from.checked_add_days(chrono::Days::new(n.into())),
            Step::Weeks(n) => from.checked_add_days(chrono::Days::new(u64::from(n) * 7)),
            Step::Months(n) => from.checked_add_months(Months::new(n)),
        }
    }
}

/// A half-open date range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl FromStr for Window {
    type Err = UsageError;
    fn from_str(s: &str) -> UsageResult<Window> {
        parse_backfill(s)
    }
}

/// Parses `--step`.
pub fn parse_step(s: &str) -> UsageResult<Step> {
    s.parse()
}

/// Parses an ISO date given to `--start`.
pub fn parse_date(s: &str) -> UsageResult<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| usage!("invalid --start '{s}': expected an ISO date (YYYY-MM-DD)"))
}

/// Parses `FROM..TO` (ISO dates, TO exclusive, FROM < TO).
pub fn parse_backfill(s: &str) -> UsageResult<Window> {
    let (from, to) = s.split_once("..").ok_or_else(|| {
        usage!("invalid --backfill '{s}': expected FROM..TO, e.g. 2024-01-01..2024-04-01")
    })?;
    let date = |d: &str| {
        NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
            .map_err(|_| usage!("invalid --backfill '{s}': '{d}' is not an ISO date (YYYY-MM-DD)"))
    };
    let (start, end) = (date(from)?, date(to)?);
    if start >= end {
        return Err(usage!(
            "invalid --backfill '{s}': FROM must be before TO (TO is exclusive)"
        ));
    }
    Ok(Window { start, end })
}

/// Cuts `range` into consecutive windows of `step`; the last one is clipped at `range.end`.
pub fn windows(range: Window, step: Step) -> Vec<Window> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = step.advance(start).map_or(range.end, |e| e.min(range.end));
        out.push(Window { start, end });
        start = end;
    }
    out
}

/// One unit of work: one dbt invocation (plus its retries).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Stable, file-system safe id (`[A-Za-z0-9._-]`), unique in the plan.
    pub id: String,
    /// What a person reads: the window and/or the selector.
    pub label: String,
    /// `--select` for dbt, if any.
    pub select: Option<String>,
    /// The backfill window, if any.
    pub window: Option<Window>,
    /// The full vars for this batch (base vars merged with the window vars).
    pub vars: Map<String, Value>,
    /// Nodes this batch leaves to other batches (on a shared warehouse), added to
    /// the run's `--exclude`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// dbt's `--indirect-selection`, when the plan lists a batch's tests itself.
    #[serde(default)]
    pub indirect_selection: Option<String>,
    /// Ids of the batches that must succeed before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Relations this batch writes that no other batch may write at the same time.
    #[serde(default)]
    pub locks: Vec<String>,
    /// What a plan file set for this batch alone (the run's options otherwise).
    #[serde(default)]
    pub own: BatchOptions,
}

/// A batch's own options, from a plan file's entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Added to the run's `--exclude`.
    pub exclude: Option<String>,
    /// Instead of the run's `--selector`.
    pub selector: Option<String>,
    /// Added to the environment (`{batch}`, `{worker}` replaced).
    pub env: std::collections::BTreeMap<String, String>,
    /// Instead of the run's `--threads`.
    pub threads: Option<u32>,
    /// Instead of the run's `--command`.
    pub command: Option<DbtCommand>,
    /// After the run's own extra dbt args.
    pub args: Vec<String>,
}

impl BatchOptions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the plan is built from (already validated values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSpec {
    /// A plan file's entries (then `selects` is empty).
    #[serde(default)]
    pub entries: Vec<file::PlanEntry>,
    pub selects: Vec<String>,
    pub backfill: Option<Window>,
    pub step: Step,
    pub start_var: String,
    pub end_var: String,
    pub base_vars: Map<String, Value>,
    /// Whether windows are given as vars or as event-time bounds.
    pub window_as: WindowAs,
}

/// A batch's vars on one line, in a form `parse_vars` reads back (JSON is YAML).
pub fn vars_inline(vars: &Map<String, Value>) -> String {
    if vars.is_empty() {
        return String::new();
    }
    serde_json::to_string(vars).unwrap_or_default()
}

/// Parses `--vars`: YAML or JSON that must be a mapping (or empty).
pub fn parse_vars(s: &str) -> UsageResult<Map<String, Value>> {
    if s.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value = serde_yaml_ng::from_str(s).map_err(|e| {
        let reason = e.to_string();
        let first = reason.lines().next().unwrap_or("invalid YAML");
        usage!("invalid --vars '{s}': not valid YAML or JSON ({first})")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(usage!(
            "invalid --vars '{s}': expected a mapping like {{key: value}}"
        )),
    }
}

/// Builds the batches: windows × selectors, or windows × plan entries (either
/// may be absent).
pub fn build(spec: &PlanSpec) -> Vec<Batch> {
    let wins: Vec<Option<Window>> = match spec.backfill {
        Some(range) => windows(range, spec.step).into_iter().map(Some).collect(),
        None => vec![None],
    };
    if !spec.entries.is_empty() {
        return from_entries(spec, &wins);
    }
    let sels: Vec<Option<&String>> = if spec.selects.is_empty() {
        vec![None]
    } else {
        spec.selects.iter().map(Some).collect()
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(wins.len() * sels.len());
    for win in &wins {
        for sel in &sels {
            let label = label_for(win.as_ref(), sel.map(String::as_str));
            let base_id = match (win, sel) {
                (Some(w), Some(s)) => format!("{}_{}", w.start, slug(s)),
                (Some(w), None) => w.start.to_string(),
                (None, Some(s)) => slug(s),
                (None, None) => "all".to_string(),
            };
            let n = seen.entry(base_id.clone()).or_insert(0);
            *n += 1;
            let id = if *n == 1 {
                base_id
            } else {
                format!("{base_id}-{n}")
            };
            let vars = window_vars(spec, &Map::new(), win.as_ref());
            out.push(Batch {
                id,
                label,
                select: sel.cloned(),
                window: *win,
                vars,
                ..Batch::default()
            });
        }
    }
    out
}

/// The window's vars over the base vars (and an entry's own), as a batch gets them.
fn window_vars(
    spec: &PlanSpec,
    own: &Map<String, Value>,
    win: Option<&Window>,
) -> Map<String, Value> {
    let mut vars = spec.base_vars.clone();
    vars.extend(own.clone());
    if let Some(w) = win
        && spec.window_as == WindowAs::Vars
    {
        vars.insert(spec.start_var.clone(), Value::String(w.start.to_string()));
        vars.insert(spec.end_var.clone(), Value::String(w.end.to_string()));
    }
    vars
}

/// Each window × each plan-file entry; an entry's `after` names the same
/// window's batches of those entries.
fn from_entries(spec: &PlanSpec, wins: &[Option<Window>]) -> Vec<Batch> {
    let mut out = Vec::with_capacity(wins.len() * spec.entries.len());
    for win in wins {
        let id = |entry: &str| match win {
            Some(w) => format!("{}_{entry}", w.start),
            None => entry.to_string(),
        };
        for e in &spec.entries {
            let what = e.select.clone().unwrap_or_else(|| e.id.clone());
            out.push(Batch {
                id: id(&e.id),
                label: label_for(win.as_ref(), Some(&what)),
                select: e.select.clone(),
                window: *win,
                vars: window_vars(spec, &e.vars, win.as_ref()),
                after: e.after.iter().map(|a| id(a)).collect(),
                own: BatchOptions {
                    exclude: e.exclude.clone(),
                    selector: e.selector.clone(),
                    env: e.env.clone(),
                    threads: e.threads,
                    command: e.command,
                    args: e.args.clone(),
                },
                ..Batch::default()
            });
        }
    }
    out
}

/// What a person reads for a batch: the window and/or the selector.
pub fn label_for(window: Option<&Window>, select: Option<&str>) -> String {
    // A one-day window reads best as its day.
    let day_or_range = |w: &Window| {
        if w.start.succ_opt() == Some(w.end) {
            w.start.to_string()
        } else {
            w.to_string()
        }
    };
    match (window, select) {
        (Some(w), Some(s)) => format!("{} {s}", day_or_range(w)),
        (Some(w), None) => day_or_range(w),
        (None, Some(s)) => s.to_string(),
        (None, None) => "all".to_string(),
    }
}

/// A file-system and env-safe rendering of a selector: `tag:finance` → `tag-finance`.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let mut slug: String = trimmed.chars().take(60).collect();
    if slug.is_empty() {
        slug.push_str("batch");
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn plan_file_entries_run_in_every_window_with_their_own_options() {
        let entries = file::parse(
            "- {id: load, select: tag:load, threads: 2, env: {X: '{batch}'}}\n- {id: report, select: tag:report, after: [load], vars: {k: 1}}",
        )
        .unwrap();
        let spec = PlanSpec {
            entries,
            selects: vec![],
            backfill: Some(parse_backfill("2024-03-01..2024-03-03").unwrap()),
            step: Step::Days(1),
            start_var: "start_date".into(),
            end_var: "end_date".into(),
            base_vars: parse_vars("{k: 0, base: true}").unwrap(),
            window_as: WindowAs::Vars,
        };
        let plan = build(&spec);
        let ids: Vec<&str> = plan.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "2024-03-01_load",
                "2024-03-01_report",
                "2024-03-02_load",
                "2024-03-02_report"
            ]
        );
        assert_eq!(
            plan[1].after,
            ["2024-03-01_load"],
            "the same window's entry"
        );
        assert_eq!(plan[3].after, ["2024-03-02_load"]);
        assert_eq!(plan[1].vars["k"], 1, "the entry's vars over the base");
        assert_eq!(plan[1].vars["base"], true);
        assert_eq!(plan[3].vars["start_date"], "2024-03-02");
        assert_eq!(plan[0].own.threads, Some(2));
        assert_eq!(plan[0].label, "2024-03-01 tag:load");
    }

    #[test]
    fn steps_parse_and_reject() {
        assert_eq!("1d".parse::<Step>().unwrap(), Step::Days(1));
        assert_eq!("2w".parse::<Step>().unwrap(), Step::Weeks(2));
        assert_eq!("3mo".parse::<Step>().unwrap(), Step::Months(3));
        for bad in ["0d", "d", "1", "1x", "-1d", "1 mo", ""] {
            let err = bad.parse::<Step>().unwrap_err();
            assert!(err.0.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
    }

    #[test]
    fn backfill_parses_and_rejects() {
        let w = parse_backfill("2024-01-01..2024-04-01").unwrap();
        assert_eq!((w.start, w.end), (d("2024-01-01"), d("2024-04-01")));
        assert!(
            parse_backfill("2024-02-01..2024-01-01")
                .unwrap_err()
                .0
                .contains("before")
        );
        assert!(parse_backfill("2024-01-01..2024-01-01").is_err());
        assert!(
            parse_backfill("2024-13-01..2024-12-01")
                .unwrap_err()
                .0
                .contains("2024-13-01")
        );
        assert!(
            parse_backfill("2024-01-01")
                .unwrap_err()
                .0
                .contains("FROM..TO")
        );
    }

    #[test]
    fn daily_windows_cover_range_exactly() {
        let ws = windows(
            parse_backfill("2024-01-01..2024-04-01").unwrap(),
            Step::Days(1),
        );
        assert_eq!(ws.len(), 91);
        assert_eq!(ws[0].start, d("2024-01-01"));
        assert_eq!(ws[90].end, d("2024-04-01"));
        assert!(ws.windows(2).all(|p| p[0].end == p[1].start));
    }

    #[test]
    fn last_window_is_clipped() {
        let ws = windows(
            parse_backfill("2024-01-01..2024-01-10").unwrap(),
            Step::Weeks(1),
        );
        assert_eq!(ws.len(), 2);
        assert_eq!(
            ws[1],
            Window {
                start: d("2024-01-08"),
                end: d("2024-01-10")
            }
        );
    }

    #[test]
    fn month_steps_follow_the_calendar() {
        let ws = windows(
            parse_backfill("2024-01-31..2024-05-01").unwrap(),
            Step::Months(1),
        );
        let starts: Vec<String> = ws.iter().map(|w| w.start.to_string()).collect();
        // chrono clamps Jan 31 + 1 month to Feb 29, then keeps the 29th.
        assert_eq!(
            starts,
            ["2024-01-31", "2024-02-29", "2024-03-29", "2024-04-29"]
        );
        assert_eq!(ws.last().unwrap().end, d("2024-05-01"));
    }

    fn spec() -> PlanSpec {
        PlanSpec {
            entries: Vec::new(),
            selects: vec![],
            backfill: None,
            step: Step::Days(1),
            start_var: "start_date".into(),
            end_var: "end_date".into(),
            base_vars: Map::new(),
            window_as: WindowAs::Vars,
        }
    }

    #[test]
    fn window_batches_get_vars_over_base_vars() {
        let mut s = spec();
        s.backfill = Some(parse_backfill("2024-03-04..2024-03-06").unwrap());
        s.base_vars = parse_vars("{region: eu, start_date: overridden}").unwrap();
        let b = build(&s);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].id, "2024-03-04");
        assert!(b[0].label.contains("2024-03-04"));
        assert_eq!(b[0].vars["start_date"], "2024-03-04");
        assert_eq!(b[0].vars["end_date"], "2024-03-05");
        assert_eq!(b[0].vars["region"], "eu");
    }

    #[test]
    fn custom_var_names() {
        let mut s = spec();
        s.backfill = Some(parse_backfill("2024-03-04..2024-03-05").unwrap());
        s.start_var = "from".into();
        s.end_var = "to".into();
        let b = build(&s);
        assert_eq!(b[0].vars["from"], "2024-03-04");
        assert_eq!(b[0].vars["to"], "2024-03-05");
        assert!(!b[0].vars.contains_key("start_date"));
    }

    #[test]
    fn windows_times_selectors() {
        let mut s = spec();
        s.backfill = Some(parse_backfill("2024-03-04..2024-03-06").unwrap());
        s.selects = vec!["tag:finance".into(), "tag:ops".into()];
        let b = build(&s);
        let ids: Vec<&str> = b.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "2024-03-04_tag-finance",
                "2024-03-04_tag-ops",
                "2024-03-05_tag-finance",
                "2024-03-05_tag-ops"
            ]
        );
        assert_eq!(b[1].select.as_deref(), Some("tag:ops"));
        assert_eq!(
            b[1].label, "2024-03-04 tag:ops",
            "a one-day window reads as its day"
        );
    }

    #[test]
    fn longer_windows_are_labelled_as_ranges() {
        let mut s = spec();
        s.backfill = Some(parse_backfill("2024-03-04..2024-03-18").unwrap());
        s.step = Step::Weeks(1);
        let b = build(&s);
        assert_eq!(b[0].label, "2024-03-04..2024-03-11");
    }

    #[test]
    fn selector_batches_have_unique_ids() {
        let mut s = spec();
        s.selects = vec!["tag:a".into(), "tag a".into(), "+model_x+".into()];
        let b = build(&s);
        let ids: Vec<&str> = b.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["tag-a", "tag-a-2", "model_x"]);
        assert!(b.iter().all(|b| b.vars.is_empty() && b.window.is_none()));
    }

    #[test]
    fn no_selector_no_backfill_is_one_batch() {
        let b = build(&spec());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, "all");
        assert_eq!(b[0].select, None);
    }

    #[test]
    fn vars_accept_yaml_and_json_and_reject_garbage() {
        assert_eq!(parse_vars("{a: 1}").unwrap()["a"], 1);
        assert_eq!(parse_vars(r#"{"a": "x"}"#).unwrap()["a"], "x");
        assert!(parse_vars("").unwrap().is_empty());
        let err = parse_vars("{a: [1, 2").unwrap_err();
        assert!(err.0.contains("{a: [1, 2"), "{err}");
        assert!(parse_vars("[1, 2]").unwrap_err().0.contains("mapping"));
    }
}
