//! The report's page: a header, the timeline and budget charts, the batch table
//! (a few lines of inline script sort and filter it) and the failures.

use std::fmt::Write;

use super::timeline::Timeline;
use super::{Run, esc};
use crate::progress::fmt_duration;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#555} .axis{font-size:11px;fill:#555} .grid{stroke:#eee}
.bar.succeeded{fill:#2e9d5b} .bar.failed{fill:#d93f3f} .bar.cancelled{fill:#d99a1e}
.bar.running,.bar.unfinished{fill:#4a7fd4} .bar:hover{stroke:#000;stroke-width:1}
.limit{stroke:#d93f3f;stroke-dasharray:4 3} .reserved{fill:none;stroke:#4a7fd4;stroke-width:1.5}
.active{fill:none;stroke:#2e9d5b;stroke-width:1.5}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee}
th{cursor:pointer;user-select:none;background:#fafafa} td.num{text-align:right}
.succeeded{color:#2e9d5b} .failed{color:#d93f3f} .cancelled{color:#b07800}
input{font:inherit;padding:4px 8px;width:320px;margin-bottom:8px}
.failure{border-left:3px solid #d93f3f;padding:4px 12px;margin:12px 0} code{font-size:12px}
.legend span{margin-right:14px}
"#;

const SCRIPT: &str = r#"
const table = document.getElementById('batches');
const rows = () => Array.from(table.tBodies[0].rows);
document.getElementById('filter').addEventListener('input', e => {
  const q = e.target.value.toLowerCase();
  let shown = 0;
  rows().forEach(r => { const ok = r.textContent.toLowerCase().includes(q); r.hidden = !ok; if (ok) shown++; });
  document.getElementById('shown').textContent = shown;
});
// A filter in the address (#filter=failed) is applied on load: links can share a view.
const given = decodeURIComponent((location.hash.match(/filter=([^&]*)/) || [])[1] || '');
if (given) { const f = document.getElementById('filter'); f.value = given; f.dispatchEvent(new Event('input')); }
Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener('click', () => {
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  const key = r => { const c = r.cells[i]; return c.dataset.v !== undefined ? parseFloat(c.dataset.v) : c.textContent; };
  rows().sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * dir; })
        .forEach(r => table.tBodies[0].appendChild(r));
}));
"#;

pub(super) fn page(
    run: &Run,
    state_dir: &str,
    timeline: &Timeline,
    points: &[super::Point],
) -> String {
    let count = |s: &str| run.batches.iter().filter(|b| b.status == s).count();
    let state = match (&run.finished_at, run.exit_code) {
        (Some(_), Some(code)) => format!("finished, exit {code}"),
        (Some(_), None) => "finished".into(),
        (None, _) => "still running (a snapshot)".into(),
    };
    let mut h = String::with_capacity(4096 + run.batches.len() * 400);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dbt-herd run {dir}</title><style>{STYLE}</style></head><body>
<h1>dbt-herd run</h1><div class="meta" id="summary">{dir} · {state} · started {started}{prepared} · {n} batches: <span class="succeeded">{ok} succeeded</span>, <span class="failed">{failed} failed</span>, <span class="cancelled">{cancelled} cancelled</span>, {pending} not run · {workers} workers × {threads} threads, budget {budget}{mode}</div>
<h2>Timeline</h2><div class="legend"><span class="succeeded">■ succeeded</span><span class="failed">■ failed</span><span class="cancelled">■ cancelled</span><span style="color:#4a7fd4">■ running or unfinished</span> · {attempts} attempts; hover a bar for its batch</div>
{lanes}
<h2>Connections</h2><div class="legend"><span style="color:#4a7fd4">— reserved (threads of running batches)</span><span style="color:#2e9d5b">— active (nodes executing)</span><span style="color:#d93f3f">- - budget</span></div>{budget_svg}
"#,
        dir = esc(state_dir),
        started = esc(&run.started_at),
        prepared = prepared(run),
        n = run.batches.len(),
        ok = count("succeeded"),
        failed = count("failed"),
        cancelled = count("cancelled"),
        pending = count("pending"),
        workers = run.workers,
        threads = run.threads,
        budget = run.budget,
        mode = run
            .mode
            .as_deref()
            .map(|m| format!(" · {}", esc(m)))
            .unwrap_or_default(),
        attempts = timeline.attempts(),
        lanes = timeline.lanes_svg(),
        budget_svg = timeline.budget_svg(points),
    );
    if let Some(why) = &run.breaker {
        let _ = writeln!(
            h,
            r#"<div class="meta failed" id="breaker">stopped early: {}</div>"#,
            esc(why)
        );
    }
    table(&mut h, run);
    failures(&mut h, run);
    let _ = writeln!(h, "<script>{SCRIPT}</script></body></html>");
    h
}

fn table(h: &mut String, run: &Run) {
    let _ = write!(
        h,
        r#"<h2>Batches</h2><input id="filter" placeholder="filter: id, status, error…" aria-label="filter the batches"> <span class="meta"><span id="shown">{n}</span> shown</span>
<table id="batches"><thead><tr><th>batch</th><th>status</th><th>attempts</th><th>time</th><th>ok</th><th>error</th><th>skipped</th><th>pass</th><th>fail</th><th>warn</th><th>message</th></tr></thead><tbody>"#,
        n = run.batches.len()
    );
    for b in &run.batches {
        let c = b.nodes;
        let _ = write!(
            h,
            r#"<tr><td>{label}</td><td class="{status}">{status}</td><td class="num" data-v="{att}">{att}</td><td class="num" data-v="{d}">{dur}</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td>{msg}</td></tr>"#,
            c.success,
            c.success,
            c.error,
            c.error,
            c.skipped,
            c.skipped,
            c.pass,
            c.pass,
            c.fail,
            c.fail,
            c.warn,
            c.warn,
            label = esc(&b.label),
            status = esc(&b.status),
            att = b.attempts,
            d = b.duration_s,
            dur = fmt_duration(b.duration_s),
            msg = esc(b.error.as_deref().unwrap_or_default()),
        );
    }
    h.push_str("</tbody></table>\n");
}

fn failures(h: &mut String, run: &Run) {
    let failed: Vec<_> = run
        .batches
        .iter()
        .filter(|b| b.status == "failed")
        .collect();
    let _ = write!(h, "<h2>Failures ({})</h2>", failed.len());
    if failed.is_empty() {
        h.push_str("<p class=\"meta\">No batch failed.</p>");
    }
    for b in failed {
        let _ = write!(
            h,
            r#"<div class="failure" data-batch="{}"><b>{}</b> · {} attempts · {}{}"#,
            esc(&b.id),
            esc(&b.label),
            b.attempts,
            b.failure_class
                .map(|c| format!("{} failure: ", c.word()))
                .unwrap_or_default(),
            esc(b.error.as_deref().unwrap_or("failed"))
        );
        if !b.failing.is_empty() {
            h.push_str("<ul>");
            for n in &b.failing {
                let _ = write!(
                    h,
                    "<li><code>{}</code> {}: {}{}</li>",
                    esc(&n.unique_id),
                    esc(&n.status),
                    esc(n.message.as_deref().unwrap_or_default()),
                    n.compiled_path
                        .as_deref()
                        .map(|p| format!("<br>compiled SQL: <code>{}</code>", esc(p)))
                        .unwrap_or_default()
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</div>\n");
    }
}

/// ` · prepared in 24.1s (resolve 20.0s, mode 4.1s)`: what came before the
/// first batch, when the summary records it.
fn prepared(run: &Run) -> String {
    let Some(p) = run.preparation.as_ref().filter(|p| !p.phases.is_empty()) else {
        return String::new();
    };
    let total: f64 = p.phases.iter().map(|ph| ph.seconds).sum();
    let phases: Vec<String> = p
        .phases
        .iter()
        .map(|ph| format!("{} {}", esc(&ph.phase), fmt_duration(ph.seconds)))
        .collect();
    format!(
        " · prepared in {} ({})",
        fmt_duration(total),
        phases.join(", ")
    )
}
