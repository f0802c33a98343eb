//! The run in time, as SVG: a lane per worker with a bar per attempt (coloured
//! by outcome; hovering shows batch, attempt, duration and nodes), and below it
//! the connections reserved by running attempts, against the budget.

use std::fmt::Write;

use super::{Run, esc};
use crate::engine::messages::AttemptOutcome;
use crate::progress::fmt_duration;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 60.0;
const LANE: f64 = 22.0;
const CHART: f64 = 90.0;

/// A step chart's points: (Unix seconds, connections from then on).
type Series = Vec<(f64, u32)>;

/// One attempt, placed.
struct Bar {
    worker: usize,
    start: f64,
    end: f64,
    outcome: AttemptOutcome,
    tip: String,
    batch: String,
}

pub(crate) struct Timeline {
    bars: Vec<Bar>,
    lanes: usize,
    t0: f64,
    t1: f64,
    budget: u32,
    threads: u32,
}

impl Timeline {
    pub fn of(run: &Run, now: f64) -> Self {
        let mut bars = Vec::new();
        for b in &run.batches {
            for a in &b.history {
                let end = a.duration_s.map_or(now, |d| a.started_at + d);
                let took = a.duration_s.map_or_else(|| "running".into(), fmt_duration);
                let n = b.nodes;
                let tip = format!(
                    "{} · attempt {} ({}) · worker {} · {took} · {} · nodes: {} ok, {} error, {} skipped, {} pass, {} fail, {} warn",
                    b.label,
                    a.number,
                    a.kind.as_str(),
                    a.worker,
                    a.outcome.as_str(),
                    n.success,
                    n.error,
                    n.skipped,
                    n.pass,
                    n.fail,
                    n.warn
                );
                bars.push(Bar {
                    worker: a.worker,
                    start: a.started_at,
                    end: end.max(a.started_at),
                    outcome: a.outcome,
                    tip,
                    batch: b.id.clone(),
                });
            }
        }
        // A worker runs one attempt at a time; times are kept to the millisecond,
        // so an end may overlap the next start on its worker by a hair.
        bars.sort_by(|a, b| {
            (a.worker, a.start)
                .partial_cmp(&(b.worker, b.start))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for i in 1..bars.len() {
            if bars[i].worker == bars[i - 1].worker && bars[i - 1].end > bars[i].start {
                bars[i - 1].end = bars[i].start.max(bars[i - 1].start);
            }
        }
        let t0 = bars.iter().map(|b| b.start).fold(f64::INFINITY, f64::min);
        let t1 = bars.iter().map(|b| b.end).fold(f64::NEG_INFINITY, f64::max);
        let lanes = bars
            .iter()
            .map(|b| b.worker)
            .max()
            .unwrap_or(0)
            .max(run.workers);
        Self {
            bars,
            lanes,
            t0: if t0.is_finite() { t0 } else { now },
            t1: if t1.is_finite() { t1 } else { now },
            budget: run.budget,
            threads: run.threads,
        }
    }

    pub fn attempts(&self) -> usize {
        self.bars.len()
    }

    fn x(&self, t: f64) -> f64 {
        let span = (self.t1 - self.t0).max(1.0);
        LEFT + (t - self.t0) / span * (WIDTH - LEFT - 10.0)
    }

    /// The lanes and bars.
    pub fn lanes_svg(&self) -> String {
        let height = LANE * self.lanes as f64 + 30.0;
        let mut s = format!(
            r#"<svg id="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="attempts per worker over time">"#
        );
        for lane in 1..=self.lanes {
            let y = LANE * (lane - 1) as f64 + 4.0;
            let _ = write!(
                s,
                r#"<g class="lane" data-worker="{lane}"><text x="4" y="{:.1}" class="axis">w{lane}</text><line x1="{LEFT}" x2="{WIDTH}" y1="{:.1}" y2="{:.1}" class="grid"/></g>"#,
                y + 13.0,
                y + LANE - 2.0,
                y + LANE - 2.0
            );
        }
        for b in &self.bars {
            let lane = b.worker.max(1);
            let y = LANE * (lane - 1) as f64 + 4.0;
            let x = self.x(b.start);
            let w = (self.x(b.end) - x).max(1.5);
            let _ = write!(
                s,
                r#"<rect class="bar {}" data-batch="{}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}"><title>{}</title></rect>"#,
                b.outcome.as_str(),
                esc(&b.batch),
                LANE - 6.0,
                esc(&b.tip)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" class="axis">0</text><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text></svg>"#,
            height - 6.0,
            WIDTH - 10.0,
            height - 6.0,
            fmt_duration(self.t1 - self.t0)
        );
        s
    }

    /// Connections over time against the budget: reserved and active from the
    /// run's log, or (a run without one) reserved from the attempts.
    pub fn budget_svg(&self, points: &[super::Point]) -> String {
        let top = f64::from(self.budget.max(1));
        let y = |v: f64| 10.0 + (1.0 - v / top) * (CHART - 20.0);
        let steps = |series: &[(f64, u32)]| {
            let mut out = format!("{LEFT:.1},{:.1}", y(0.0));
            let mut level = 0u32;
            for &(t, v) in series {
                let x = self.x(t);
                let _ = write!(
                    out,
                    " {x:.1},{:.1} {x:.1},{:.1}",
                    y(f64::from(level)),
                    y(f64::from(v))
                );
                level = v;
            }
            out
        };
        let (reserved, active): (Series, Series) = if points.is_empty() {
            (self.reserved_from_attempts(), Vec::new())
        } else {
            points
                .iter()
                .map(|p| ((p.t, p.reserved), (p.t, p.active)))
                .unzip()
        };
        let peak = reserved.iter().map(|&(_, v)| v).max().unwrap_or(0);
        let active_line = if active.is_empty() {
            String::new()
        } else {
            format!(r#"<polyline class="active" points="{}"/>"#, steps(&active))
        };
        format!(
            r#"<svg id="budget" viewBox="0 0 {WIDTH} {CHART}" width="100%" role="img" aria-label="connections over time"><line x1="{LEFT}" x2="{WIDTH}" y1="{by:.1}" y2="{by:.1}" class="limit"/><text x="4" y="{ty:.1}" class="axis">budget {budget}</text><polyline class="reserved" points="{r}"/>{active_line}<text x="4" y="{ly:.1}" class="axis">peak {peak}</text></svg>"#,
            by = y(top),
            ty = y(top) + 4.0,
            budget = self.budget,
            r = steps(&reserved),
            ly = CHART - 4.0,
        )
    }

    /// The threads of running attempts at each start and end.
    fn reserved_from_attempts(&self) -> Series {
        let mut edges: Vec<(f64, i64)> = Vec::new();
        for b in &self.bars {
            edges.push((b.start, i64::from(self.threads)));
            edges.push((b.end, -i64::from(self.threads)));
        }
        edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut level = 0i64;
        edges
            .into_iter()
            .map(|(t, d)| {
                level += d;
                (t, u32::try_from(level.max(0)).unwrap_or(u32::MAX))
            })
            .collect()
    }
}
