//! The run's control server: the engine's events fanned out to the face in this
//! process and to any number of clients on `<state dir>/control.sock`; their
//! commands fanned in. It stands between the engine and every face, so a run
//! can be watched and steered from another terminal, and outlive the one it
//! started in.
//!
//! The server decides when an idle run ends: when nothing runs and nothing will
//! start (all done, or the queue paused), a run with no client that can send
//! commands ends; one with such a client waits for it (it may retry the
//! failures), and ends when the last one leaves.

pub(crate) mod client;
pub(crate) mod daemon;
pub(crate) mod mirror;
mod peer;
pub(crate) mod socket;
pub(crate) mod wire;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use color_eyre::eyre::WrapErr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dbt::events::Level;
use crate::engine::{Command, EngineHandle, EngineOutcome, Event};
use crate::report::Observer;
use mirror::Mirror;
use wire::{ClientMsg, ServerMsg};

/// Events waiting for one client before its log lines are shed (half full) or
/// it is dropped as one that stopped reading (full).
const CLIENT_QUEUE: usize = 8192;
/// Commands and events between the server and the face in this process.
const LOCAL_QUEUE: usize = 1024;

pub(crate) struct ServeOptions {
    /// A run started for a client that has not connected yet (the TUI of
    /// `dbt-herd run`): an idle run does not end before a client has come,
    /// or this long has passed.
    pub wait_for_client: Option<Duration>,
    /// Called on every engine event; what it writes becomes a notice to every
    /// face (the demo's late delivery).
    pub observer: Option<Observer>,
}

/// A line for clients, encoded once for all of them.
type Line = Arc<Vec<u8>>;

struct ClientSlot {
    id: u64,
    tx: mpsc::Sender<Line>,
}

#[derive(Default)]
struct Shared {
    mirror: Mirror,
    clients: Vec<ClientSlot>,
    writers: Vec<JoinHandle<()>>,
    next_id: u64,
    /// A client's user interrupted the run (the signal).
    interrupted: Option<i32>,
    /// The run's end, once known: a client that attaches now gets it at once.
    ended: Option<Line>,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves the data as it was: carry on.
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a client task tells the server.
enum Inbound {
    Joined { read_only: bool },
    Left { read_only: bool },
    Msg(ClientMsg),
}

/// A running control server.
pub(crate) struct Server {
    shared: SharedRef,
    acceptor: JoinHandle<()>,
    socket: PathBuf,
}

impl Server {
    /// Listens on `<state dir>/control.sock` and stands between `engine` and the
    /// face in this process, which gets the returned handle.
    pub fn start(
        engine: EngineHandle,
        state_dir: &Path,
        opts: ServeOptions,
    ) -> color_eyre::Result<(Self, EngineHandle)> {
        let socket = state_dir.join(socket::SOCKET_FILE);
        let listener = socket::listen(&socket)
            .wrap_err_with(|| format!("cannot listen on {}", socket.display()))?;
        let shared = SharedRef::default();
        let (inbound_tx, inbound) = mpsc::channel(256);
        let hello = peer::Hello {
            pid: std::process::id(),
            state_dir: state_dir.display().to_string(),
        };
        let acceptor = tokio::spawn(peer::accept_loop(
            listener,
            shared.clone(),
            inbound_tx,
            hello,
        ));
        let (local_cmd_tx, local_cmds) = mpsc::channel(LOCAL_QUEUE);
        let (local_ev_tx, local_events) = mpsc::channel(LOCAL_QUEUE);
        let pump = Pump {
            engine,
            shared: shared.clone(),
            local: local_ev_tx,
            rw_clients: 0,
            rw_seen: false,
            wait_for_client: opts.wait_for_client,
            observer: opts.observer,
        };
        let join = tokio::spawn(pump.run(local_cmds, inbound));
        let local = EngineHandle::new(local_cmd_tx, local_events, join);
        Ok((
            Self {
                shared,
                acceptor,
                socket,
            },
            local,
        ))
    }

    /// The signal a client's user interrupted the run with, if one did.
    pub fn interrupted(&self) -> Option<i32> {
        lock(&self.shared).interrupted
    }

    /// Tells every client how the run ended, lets them read it (at most a few
    /// seconds), and stops listening.
    pub async fn end(self, exit_code: i32, lines: Vec<String>) {
        // No new client from here on: one that learns the run ended finds it
        // no longer served (`ls` says so at once).
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.socket);
        let ended: Line = Arc::new(wire::encode(&ServerMsg::Ended { exit_code, lines }));
        let (senders, writers) = {
            let mut s = lock(&self.shared);
            s.ended = Some(ended.clone());
            let senders: Vec<_> = s.clients.drain(..).map(|c| c.tx).collect();
            (senders, std::mem::take(&mut s.writers))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        for tx in senders {
            let _ = tokio::time::timeout_at(deadline, tx.send(ended.clone())).await;
        }
        for w in writers {
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                break;
            }
        }
    }
}

/// Moves events from the engine to every face, and commands back.
struct Pump {
    engine: EngineHandle,
    shared: SharedRef,
    local: mpsc::Sender<Event>,
    rw_clients: usize,
    rw_seen: bool,
    wait_for_client: Option<Duration>,
    observer: Option<Observer>,
}

impl Pump {
    async fn run(
        mut self,
        mut local_cmds: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) -> color_eyre::Result<EngineOutcome> {
        let mut local_open = true;
        let hold = self.wait_for_client.unwrap_or_default();
        let hold_over = tokio::time::sleep(hold);
        tokio::pin!(hold_over);
        let mut holding = self.wait_for_client.is_some();
        loop {
            tokio::select! {
                ev = self.engine.next_event() => {
                    let Some(ev) = ev else { break };
                    self.publish(&ev);
                    if matches!(ev, Event::Idle) {
                        self.stop_if_unwatched(holding);
                    }
                    let said = self.observe(&ev);
                    forward_local(&self.local, ev).await;
                    if let Some(notice) = said {
                        self.publish(&notice);
                        forward_local(&self.local, notice).await;
                    }
                }
                cmd = local_cmds.recv(), if local_open => match cmd {
                    Some(cmd) => { self.engine.send(cmd); }
                    None => local_open = false,
                },
                Some(m) = inbound.recv() => match m {
                    Inbound::Joined { read_only } => {
                        if !read_only {
                            self.rw_clients += 1;
                            self.rw_seen = true;
                        }
                    }
                    Inbound::Left { read_only } => {
                        if !read_only {
                            self.rw_clients = self.rw_clients.saturating_sub(1);
                            if lock(&self.shared).mirror.idle {
                                self.stop_if_unwatched(holding);
                            }
                        }
                    }
                    Inbound::Msg(ClientMsg::Command { command }) => { self.engine.send(command); }
                    Inbound::Msg(ClientMsg::Interrupted { signal }) => {
                        lock(&self.shared).interrupted.get_or_insert(signal);
                    }
                    Inbound::Msg(ClientMsg::Hello { .. }) => {}
                },
                () = &mut hold_over, if holding => {
                    holding = false;
                    if lock(&self.shared).mirror.idle {
                        self.stop_if_unwatched(holding);
                    }
                }
            }
        }
        self.engine.finish().await
    }

    /// An idle run ends unless a client that can send commands is attached (or
    /// the client it was started for has not come yet).
    fn stop_if_unwatched(&self, holding: bool) {
        // Held for the client it was started for until that one has come.
        let waiting_for_first = holding && !self.rw_seen;
        if self.rw_clients == 0 && !waiting_for_first {
            self.engine.send(Command::Shutdown { force: false });
        }
    }

    /// The event into the mirror and to every client. A client whose queue is
    /// half full gets no log lines; one whose queue is full has stopped reading
    /// and is dropped.
    fn publish(&self, ev: &Event) {
        let mut s = lock(&self.shared);
        s.mirror.apply(ev);
        if s.clients.is_empty() {
            return;
        }
        let line: Line = Arc::new(wire::encode(&ServerMsg::Event {
            event: Box::new(ev.clone()),
        }));
        let is_log = matches!(ev, Event::Log { .. });
        s.clients.retain(|c| {
            if is_log && c.tx.capacity() < CLIENT_QUEUE / 2 {
                return true;
            }
            c.tx.try_send(line.clone()).is_ok()
        });
    }

    /// What the observer has to say about `ev`, as a notice.
    fn observe(&mut self, ev: &Event) -> Option<Event> {
        let observer = self.observer.as_mut()?;
        let mut said = Vec::new();
        observer(ev, &mut said);
        let text = String::from_utf8_lossy(&said).trim().to_string();
        (!text.is_empty()).then_some(Event::Notice {
            level: Level::Info,
            text,
        })
    }
}

/// To the face in this process: log lines are shed when it falls behind, state
/// events wait for it.
async fn forward_local(local: &mpsc::Sender<Event>, ev: Event) {
    if matches!(ev, Event::Log { .. }) {
        let _ = local.try_send(ev);
    } else {
        let _ = local.send(ev).await;
    }
}
