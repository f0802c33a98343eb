//! `dbt-herd attach --headless`: a served run's progress as lines, as a headless
//! run prints them, and the run's own exit status at its end.

use std::io::Write;
use std::time::Duration;

use super::{Reporter, StopSignals, clean};
use crate::server::client::RemoteLink;

/// Prints a served run's progress as a headless run would, until it ends; its
/// exit status then. A signal only stops the watching: the run goes on.
pub(crate) async fn watch<W: Write>(
    link: &mut RemoteLink,
    out: W,
    state_dir: &str,
) -> color_eyre::Result<i32> {
    let mut signals = StopSignals::new()?;
    let mut r = Reporter::new(out);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let sig = loop {
        tokio::select! {
            ev = link.next_event() => {
                let Some(ev) = ev else { break None };
                r.on_event(&ev);
            }
            _ = tick.tick() => r.totals_line(),
            sig = signals.next() => break Some(sig),
        }
    };
    let dir = clean(state_dir);
    if let Some(sig) = sig {
        r.line(&format!(
            "stopped watching; the run goes on: dbt-herd attach {dir}"
        ));
        return Ok(crate::error::exit::SIGNAL_BASE + sig);
    }
    let _ = writeln!(r.out);
    if let Some(end) = link.end() {
        for line in &end.lines {
            let _ = writeln!(r.out, "{line}");
        }
        let _ = r.out.flush();
        return Ok(end.exit_code);
    }
    let _ = r.out.flush();
    eprintln!("dbt-herd: lost the connection to the run; its log is {dir}/herd.log");
    Ok(crate::error::exit::INTERNAL)
}
