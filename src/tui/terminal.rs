//! The TUI's runtime: owns the terminal, feeds keys, engine events, signals and a
//! clock into `App::update`, carries out the effects, and draws at most ~30 times
//! a second and only when something changed.

use std::io::{self, Stdout};
use std::time::{Duration, Instant};

use color_eyre::eyre::WrapErr;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use futures::FutureExt;
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::app::{App, Effect, Msg};
use super::external::{self, Program};
use super::theme::Theme;
use super::view;
use crate::clock::now_secs;
use crate::dbt::events::Level;
use crate::engine::{Command, Event};
use crate::error::exit;
use crate::server::client::RemoteLink;

/// At most this often a frame (about 30 per second).
const FRAME: Duration = Duration::from_millis(33);
/// Engine events handled before the screen gets a chance to redraw.
const EVENT_BATCH: usize = 4096;

pub(crate) struct TuiOptions {
    pub theme: Theme,
    /// Print frame-time statistics to stderr on exit.
    pub frame_stats: bool,
    /// Clicks and the wheel go to the TUI (off: to the terminal's selection).
    pub mouse: bool,
    /// A served run: stop it when the terminal goes away, instead of detaching.
    pub stop_on_hangup: bool,
    /// Watch only: no key sends the run a command.
    pub read_only: bool,
}

impl Default for TuiOptions {
    fn default() -> Self {
        Self {
            theme: Theme::from_env(),
            frame_stats: std::env::var_os("DBT_HERD_FRAME_STATS").is_some(),
            mouse: true,
            stop_on_hangup: false,
            read_only: false,
        }
    }
}

type Term = Terminal<CrosstermBackend<Stdout>>;

fn enter(mouse: bool) -> io::Result<Term> {
    take_screen(mouse)?;
    Terminal::new(CrosstermBackend::new(io::stdout()))
}

fn take_screen(mouse: bool) -> io::Result<()> {
    enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
    if mouse {
        execute!(io::stdout(), EnableMouseCapture)?;
    }
    Ok(())
}

/// Gives the terminal back as it was. Safe to call more than once.
fn leave() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
}

/// Restores the terminal before any panic message is printed.
fn install_panic_restore() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave();
        previous(info);
    }));
}

struct FrameStats {
    draws: Vec<Duration>,
}

impl FrameStats {
    fn report(&mut self) -> String {
        if self.draws.is_empty() {
            return "frames: none drawn".into();
        }
        self.draws.sort();
        let n = self.draws.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = self.draws.iter().map(|d| ms(*d)).sum::<f64>() / n as f64;
        format!(
            "frames: {n} drawn · draw time mean {mean:.2} ms · p95 {:.2} ms · max {:.2} ms",
            ms(self.draws[(n * 95 / 100).min(n - 1)]),
            ms(self.draws[n - 1])
        )
    }
}

/// Runs the TUI on a run served by another process until the run ends, the user
/// detaches, or the terminal goes away. Returns the exit status: the run's own
/// when it ended, 0 when detached.
pub(crate) async fn attach(
    mut link: RemoteLink,
    mut opts: TuiOptions,
    state_dir: &str,
) -> color_eyre::Result<i32> {
    install_panic_restore();
    let mut term = enter(opts.mouse).wrap_err("cannot set up the terminal for the TUI")?;
    let size = term.size().unwrap_or_default();
    let mut app = App::new(now_secs(), (size.width, size.height));
    app.detachable = true;
    app.read_only = opts.read_only;
    let mut stats = FrameStats { draws: Vec::new() };
    let result = event_loop(&mut term, &mut link, &mut app, &mut opts, &mut stats).await;
    if matches!(result, Ok(LoopEnd::Hangup)) {
        // Nobody reads this terminal any more (it was disowned): leave, after
        // a stop asked for on hang-up has reached the run.
        link.close().await;
        return Ok(exit::SIGNAL_BASE + libc::SIGHUP);
    }
    leave();
    let end = result.wrap_err("the TUI failed")?;
    if opts.frame_stats {
        eprintln!("{}", stats.report());
    }
    let dir = crate::report::clean(state_dir);
    let totals = crate::progress::Totals::of(&app.batches);
    if end == LoopEnd::Detached
        && app.info.is_some()
        && totals.running + totals.pending == 0
        && !app.read_only
    {
        // Nothing left to run and no one to retry: the run ends on its own.
        println!("left the TUI: the run had nothing left to do, so it ends");
        println!("its summary: {dir}/summary.json (dbt-herd attach {dir} shows how it ended)");
        return Ok(exit::OK);
    }
    if end == LoopEnd::Detached {
        println!("detached: the run goes on (pid {})", link.pid);
        println!("attach with: dbt-herd attach {dir}");
        println!("stop with:   dbt-herd stop {dir}");
        return Ok(exit::OK);
    }
    // The engine has stopped; the run's last word (its exit status) follows.
    let end = match link.end().cloned() {
        Some(e) => Some(e),
        None => tokio::time::timeout(Duration::from_secs(30), link.wait_end())
            .await
            .ok()
            .flatten(),
    };
    let Some(end) = end else {
        eprintln!("dbt-herd: lost the connection to the run; its log is {dir}/herd.log");
        return Ok(exit::INTERNAL);
    };
    for line in &end.lines {
        if end.exit_code == exit::USAGE {
            // It could not run as asked: an error, as a headless run says it.
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(end.exit_code)
}

/// Points stdin, stdout and stderr at /dev/null: after a hang-up, a write to
/// the dead terminal fails, and a failed print in a panic or a drop would abort.
fn disown_terminal() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which stay open.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

/// How the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopEnd {
    /// The run ended (or the engine stopped).
    Done,
    /// The user detached (`d`).
    Detached,
    /// The terminal went away and the run goes on without it.
    Hangup,
}

async fn event_loop(
    term: &mut Term,
    handle: &mut RemoteLink,
    app: &mut App,
    opts: &mut TuiOptions,
    stats: &mut FrameStats,
) -> io::Result<LoopEnd> {
    let mut keys = Some(EventStream::new());
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    // After Ctrl-Z, one tick, not a burst of the missed ones.
    clock.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dirty = true;

    loop {
        let effects = tokio::select! {
            ev = handle.next_event() => {
                let Some(ev) = ev else { return Ok(LoopEnd::Done) };
                let mut fx = app.update(Msg::Engine(ev));
                // Take what else is queued before drawing, so a log flood costs
                // one frame, not one frame per line.
                for _ in 0..EVENT_BATCH {
                    match handle.try_next_event() {
                        Some(ev) => fx.extend(app.update(Msg::Engine(ev))),
                        None => break,
                    }
                }
                dirty = true;
                fx
            }
            input = next_key(&mut keys) => match input {
                Some(Ok(TermEvent::Key(key))) => {
                    dirty = true;
                    app.update(Msg::Key(key))
                }
                Some(Ok(TermEvent::Mouse(event))) => {
                    dirty = true;
                    app.update(Msg::Mouse { event, at: now_secs() })
                }
                Some(Ok(TermEvent::Resize(w, h))) => {
                    dirty = true;
                    app.update(Msg::Resize(w, h))
                }
                Some(Ok(_)) => Vec::new(),
                // The terminal is gone. (On a hang-up crossterm may instead keep
                // retrying its read; SIGHUP and failed draws catch that case.)
                Some(Err(_)) | None => return Ok(terminal_lost(handle, opts, &mut keys)),
            },
            _ = clock.tick() => {
                dirty = true;
                app.update(Msg::Tick(now_secs()))
            }
            _ = frame.tick(), if dirty => {
                dirty = false;
                // Durations on screen are as of this frame.
                app.update(Msg::Tick(now_secs()));
                let t = Instant::now();
                if term.draw(|f| view::draw(f, app, &opts.theme)).is_err() {
                    return Ok(terminal_lost(handle, opts, &mut keys));
                } else {
                    if opts.frame_stats {
                        stats.draws.push(t.elapsed());
                    }
                    Vec::new()
                }
            }
            _ = sigint.recv() => app.update(Msg::Signal(libc::SIGINT)),
            _ = sigterm.recv() => app.update(Msg::Signal(libc::SIGTERM)),
            _ = sighup.recv() => return Ok(terminal_lost(handle, opts, &mut keys)),
        };
        for fx in effects {
            match fx {
                Effect::Send(cmd) if opts.read_only => {
                    // Quitting a watcher leaves the run alone.
                    if matches!(cmd, Command::Shutdown { .. }) {
                        return Ok(LoopEnd::Detached);
                    }
                    app.update(Msg::Engine(Event::Notice {
                        level: Level::Warn,
                        text: "read-only: this TUI only watches (attach without --read-only to steer the run)".into(),
                    }));
                }
                Effect::Send(cmd) => {
                    if let (Command::Shutdown { .. }, Some(sig)) = (&cmd, app.interrupted) {
                        handle.interrupted(sig);
                    }
                    if !handle.send(cmd) {
                        app.update(Msg::Engine(Event::Notice {
                            level: Level::Warn,
                            text: "the engine is busy: that key was not taken; press it again"
                                .into(),
                        }));
                    }
                }
                Effect::Suspend => {
                    suspend(term, opts.mouse)?;
                    dirty = true;
                }
                Effect::Page(files) => {
                    hand_over(
                        term,
                        &mut keys,
                        &mut sigint,
                        opts.mouse,
                        app,
                        &Program::Pager,
                        &files,
                    )?;
                    dirty = true;
                }
                Effect::Edit(file) => {
                    let files = [file];
                    hand_over(
                        term,
                        &mut keys,
                        &mut sigint,
                        opts.mouse,
                        app,
                        &Program::Editor,
                        &files,
                    )?;
                    dirty = true;
                }
                Effect::Exit => return Ok(LoopEnd::Done),
                Effect::Detach => return Ok(LoopEnd::Detached),
            }
        }
    }
}

/// The next key, mouse or resize; never, once the key reader is gone.
async fn next_key(keys: &mut Option<EventStream>) -> Option<io::Result<TermEvent>> {
    match keys {
        Some(k) => k.next().await,
        None => std::future::pending().await,
    }
}

/// The terminal went away (hang-up, read or write error): the run goes on
/// without this TUI, or (`--on-hangup stop`) is told to stop; either way the TUI
/// leaves at once (the run's own process carries out a stop), reading no more
/// keys (the key reader would spin on the dead terminal) and printing nothing.
fn terminal_lost(
    handle: &RemoteLink,
    opts: &TuiOptions,
    keys: &mut Option<EventStream>,
) -> LoopEnd {
    disown_terminal();
    *keys = None;
    if opts.stop_on_hangup {
        handle.interrupted(libc::SIGHUP);
        handle.send(Command::Shutdown { force: false });
    }
    LoopEnd::Hangup
}

/// Ctrl-Z: give the terminal back, stop this process, and take the screen again on
/// `fg`. dbt runs on in its own process groups until its output pipe fills up; no
/// new batch starts meanwhile.
fn suspend(term: &mut Term, mouse: bool) -> io::Result<()> {
    leave();
    // SAFETY: raising a signal on ourselves; SIGTSTP's default action stops the
    // process and returns here once it is continued.
    unsafe {
        libc::raise(libc::SIGTSTP);
    }
    take_screen(mouse)?;
    redraw_all(term)
}

/// After the screen was someone else's: clear it and start from empty
/// buffers, so the next frame draws every cell. (`Terminal::clear` asks the
/// terminal where its cursor is, and that answer can be lost on the way back.)
fn redraw_all(term: &mut Term) -> io::Result<()> {
    execute!(
        io::stdout(),
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    )?;
    *term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    Ok(())
}

/// `v` and `E`: the user's pager or editor gets the terminal until it exits.
/// The key reader is dropped meanwhile (it would take the program's keys), and
/// a Ctrl-C typed into the program (less uses it) does not stop the run. dbt
/// runs on; its events wait in the engine's bounded queue.
fn hand_over(
    term: &mut Term,
    keys: &mut Option<EventStream>,
    sigint: &mut tokio::signal::unix::Signal,
    mouse: bool,
    app: &mut App,
    program: &Program,
    files: &[std::path::PathBuf],
) -> io::Result<()> {
    leave();
    *keys = None;
    let result = tokio::task::block_in_place(|| external::run(program, files));
    while let Some(Some(())) = sigint.recv().now_or_never() {}
    take_screen(mouse)?;
    redraw_all(term)?;
    *keys = Some(EventStream::new());
    if let Err(e) = result {
        app.update(Msg::Engine(Event::Notice {
            level: Level::Warn,
            text: e,
        }));
    }
    Ok(())
}
