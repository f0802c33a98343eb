//! The client side of the control socket: a face's link to a run served by
//! another process (`dbt-herd attach`, the TUI of `dbt-herd run`, `stop`).

use std::path::Path;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::socket::{self, SOCKET_FILE};
use super::wire::{self, ClientMsg, PROTOCOL, ServerMsg};
use crate::engine::{Command, Event};

/// How a served run ended, as its server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteEnd {
    pub exit_code: i32,
    pub lines: Vec<String>,
}

/// Why a connection to a run failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// No run is served there (it ended, or never was).
    NotLive,
    /// The server said no (another protocol version).
    Refused(String),
    Io(std::io::Error),
}

pub(crate) struct RemoteLink {
    commands: mpsc::Sender<ClientMsg>,
    /// Writes the commands to the socket.
    writer: tokio::task::JoinHandle<()>,
    events: mpsc::Receiver<ServerMsg>,
    end: Option<RemoteEnd>,
    /// The server's pid, from its hello.
    pub pid: u32,
}

impl RemoteLink {
    /// Connects to the run served from `state_dir` and says hello.
    pub async fn connect(state_dir: &Path, read_only: bool) -> Result<Self, ConnectError> {
        let stream = match socket::connect(&state_dir.join(SOCKET_FILE)).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ConnectError::NotLive);
            }
            Err(e) => return Err(ConnectError::Io(e)),
        };
        let (read, mut write) = stream.into_split();
        let hello = wire::encode(&ClientMsg::Hello {
            protocol: PROTOCOL,
            read_only,
        });
        write.write_all(&hello).await.map_err(ConnectError::Io)?;
        let mut reader = BufReader::new(read);
        let mut buf = Vec::new();
        let first = match wire::read_line(&mut reader, &mut buf).await {
            Ok(Some(())) => serde_json::from_slice::<ServerMsg>(&buf).ok(),
            Ok(None) => return Err(ConnectError::NotLive),
            Err(e) => return Err(ConnectError::Io(e)),
        };
        let pid = match first {
            Some(ServerMsg::Hello { pid, .. }) => pid,
            Some(ServerMsg::Refused { reason }) => return Err(ConnectError::Refused(reason)),
            _ => {
                return Err(ConnectError::Refused(
                    "the control socket answered something else than dbt-herd's hello".into(),
                ));
            }
        };
        let (ev_tx, events) = mpsc::channel(4096);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Ok(Some(())) = wire::read_line(&mut reader, &mut buf).await {
                let Ok(msg) = serde_json::from_slice::<ServerMsg>(&buf) else {
                    break;
                };
                if ev_tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let (commands, mut cmd_rx) = mpsc::channel::<ClientMsg>(256);
        let writer = tokio::spawn(async move {
            while let Some(msg) = cmd_rx.recv().await {
                if write.write_all(&wire::encode(&msg)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            commands,
            writer,
            events,
            end: None,
            pid,
        })
    }

    /// How the run ended, once the events have run out; `None` if the
    /// connection was lost first.
    pub fn end(&self) -> Option<&RemoteEnd> {
        self.end.as_ref()
    }

    fn take(&mut self, msg: ServerMsg) -> Option<Event> {
        match msg {
            ServerMsg::Event { event } => Some(*event),
            ServerMsg::Ended { exit_code, lines } => {
                self.end = Some(RemoteEnd { exit_code, lines });
                self.events.close();
                None
            }
            ServerMsg::Hello { .. } | ServerMsg::Refused { .. } => None,
        }
    }

    /// Sends what is still queued (at most a second) and closes the connection.
    pub async fn close(self) {
        let Self {
            commands, writer, ..
        } = self;
        drop(commands);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
    }

    /// Waits for how the run ends, reading (and dropping) its events.
    pub async fn wait_end(&mut self) -> Option<RemoteEnd> {
        while self.next_event().await.is_some() {}
        self.end.clone()
    }
}

impl RemoteLink {
    /// Sends a command; false if it was not taken (the connection is gone or busy).
    pub fn send(&self, cmd: Command) -> bool {
        self.commands
            .try_send(ClientMsg::Command { command: cmd })
            .is_ok()
    }

    /// The next event; `None` once the run has ended or the connection is lost.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let msg = self.events.recv().await?;
            if let Some(ev) = self.take(msg) {
                return Some(ev);
            }
            if self.end.is_some() {
                return None;
            }
        }
    }

    /// The user interrupted the run with `signal` (a Shutdown follows): the run
    /// records it for its exit status.
    pub fn interrupted(&self, signal: i32) {
        let _ = self.commands.try_send(ClientMsg::Interrupted { signal });
    }

    /// An event already waiting, if any.
    pub fn try_next_event(&mut self) -> Option<Event> {
        loop {
            let msg = self.events.try_recv().ok()?;
            if let Some(ev) = self.take(msg) {
                return Some(ev);
            }
            if self.end.is_some() {
                return None;
            }
        }
    }
}
