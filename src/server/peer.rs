//! One connection on the control socket: checked (same user, a known protocol),
//! brought up to date with a snapshot, then fed events while its commands go
//! to the engine. Whatever a client does, it can only lose its own connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::wire::{self, ClientMsg, PROTOCOL, ServerMsg};
use super::{CLIENT_QUEUE, ClientSlot, Inbound, Line, SharedRef, lock, socket};

/// How long a client has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write may wait for a client to read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct Hello {
    pub pid: u32,
    pub state_dir: String,
}

pub(super) async fn accept_loop(
    listener: UnixListener,
    shared: SharedRef,
    inbound: mpsc::Sender<Inbound>,
    hello: Hello,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Another user gets nothing at all, not even a refusal.
        if !socket::same_user(&stream) {
            continue;
        }
        tokio::spawn(serve(
            stream,
            shared.clone(),
            inbound.clone(),
            hello.clone(),
        ));
    }
}

async fn serve(
    stream: UnixStream,
    shared: SharedRef,
    inbound: mpsc::Sender<Inbound>,
    hello: Hello,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    let read_only = match tokio::time::timeout(
        HELLO_TIMEOUT,
        wire::read_line(&mut reader, &mut buf),
    )
    .await
    {
        Ok(Ok(Some(()))) => match serde_json::from_slice::<ClientMsg>(&buf) {
            Ok(ClientMsg::Hello {
                protocol: PROTOCOL,
                read_only,
            }) => read_only,
            Ok(ClientMsg::Hello { protocol, .. }) => {
                let reason = format!(
                    "this run speaks protocol {PROTOCOL}, the client {protocol}: use the same dbt-herd version"
                );
                refuse(&mut write, reason).await;
                return;
            }
            _ => {
                refuse(&mut write, "expected a hello".into()).await;
                return;
            }
        },
        _ => return,
    };

    let (tx, rx) = mpsc::channel::<Line>(CLIENT_QUEUE);
    let greeting = ServerMsg::Hello {
        protocol: PROTOCOL,
        pid: hello.pid,
        state_dir: hello.state_dir,
    };
    // The snapshot and the registration happen under one lock: the client
    // misses no event and sees none twice.
    let registered = {
        let mut s = lock(&shared);
        let _ = tx.try_send(Arc::new(wire::encode(&greeting)));
        for event in s.mirror.snapshot() {
            let event = Box::new(event);
            let _ = tx.try_send(Arc::new(wire::encode(&ServerMsg::Event { event })));
        }
        if let Some(end) = s.ended.clone() {
            let _ = tx.try_send(end);
            None
        } else {
            let id = s.next_id;
            s.next_id += 1;
            s.clients.push(ClientSlot { id, tx: tx.clone() });
            Some(id)
        }
    };
    drop(tx);
    // Told when the writer ends (the client stopped reading, or was dropped as
    // one that did): the reader then stops too, and the client is gone.
    let (writer_done, mut writer_gone) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(write_loop(write, rx, writer_done));
    let Some(id) = registered else {
        // The run is over: the client got its end with the snapshot.
        let _ = writer.await;
        return;
    };
    {
        let mut s = lock(&shared);
        s.writers.retain(|w| !w.is_finished());
        s.writers.push(writer);
    }
    if inbound.send(Inbound::Joined { read_only }).await.is_err() {
        return;
    }
    // Commands until the client leaves or says something that is not one.
    loop {
        // Reading first: a client that spoke and left at once (its writes are
        // in the socket, its end closed) still has its commands carried out,
        // though its writer already failed on the closed connection.
        let line = tokio::select! {
            biased;
            r = wire::read_line(&mut reader, &mut buf) => r,
            _ = &mut writer_gone => break,
        };
        if !matches!(line, Ok(Some(()))) {
            break;
        }
        match serde_json::from_slice::<ClientMsg>(&buf) {
            Ok(ClientMsg::Hello { .. }) | Err(_) => break,
            Ok(msg) if !read_only => {
                if inbound.send(Inbound::Msg(msg)).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
        }
    }
    // Its queue goes: the writer ends and closes the connection.
    lock(&shared).clients.retain(|c| c.id != id);
    let _ = inbound.send(Inbound::Left { read_only }).await;
}

/// Writes the client's queue to it; `_done` goes with it when it ends.
async fn write_loop(
    mut write: tokio::net::unix::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Line>,
    _done: tokio::sync::oneshot::Sender<()>,
) {
    while let Some(line) = rx.recv().await {
        let sent = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&line)).await;
        if !matches!(sent, Ok(Ok(()))) {
            // Stopped reading: the connection goes; the run goes on.
            return;
        }
    }
    let _ = write.shutdown().await;
}

async fn refuse(write: &mut tokio::net::unix::OwnedWriteHalf, reason: String) {
    let line = wire::encode(&ServerMsg::Refused { reason });
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&line)).await;
    let _ = write.shutdown().await;
}
