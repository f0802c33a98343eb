//! The control socket's protocol: one JSON object per line, each way.
//!
//! A client opens with `hello` (the protocol version it speaks, and whether it
//! only watches); the server answers `hello`, then a snapshot of the whole run as
//! events (`Preparing` first, then `Started` once the run has started), then
//! every event as it happens, and `ended` with the run's exit code last. A
//! client sends commands. A client that sends anything else, a line over
//! [`MAX_LINE`], or stops reading is dropped.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::engine::{Command, Event};

/// Bumped when a message changes meaning; a client of another version is refused.
pub(crate) const PROTOCOL: u32 = 1;

/// The longest line either side accepts. A server line is one event (a batch
/// view with its history, a log line of at most a few KiB once sanitised).
pub(crate) const MAX_LINE: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ClientMsg {
    Hello {
        protocol: u32,
        /// A watcher: its commands are ignored, and it does not keep a finished
        /// run alive.
        read_only: bool,
    },
    Command {
        command: Command,
    },
    /// The client's user interrupted the run (Ctrl-C, SIGTERM): the run's exit
    /// code says so, as if the signal had reached the run itself.
    Interrupted {
        signal: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMsg {
    Hello {
        protocol: u32,
        pid: u32,
        state_dir: String,
    },
    Event {
        event: Box<Event>,
    },
    /// The run is over; these are the lines its own face printed at the end.
    Ended {
        exit_code: i32,
        lines: Vec<String>,
    },
    /// Why the server will say nothing more to this client.
    Refused {
        reason: String,
    },
}

/// One line, without its newline; `Ok(None)` at the end of the stream. A line
/// longer than [`MAX_LINE`] is an error: nothing of it is kept past the limit.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    buf.clear();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a message",
                ))
            };
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a message longer than {MAX_LINE} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            buf.pop();
            return Ok(Some(()));
        }
    }
}

/// A message as one line, newline included.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_whole_and_an_endless_one_is_refused() {
        let data = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
        let mut r = tokio::io::BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf).await.unwrap().is_some());
        assert_eq!(buf, b"{\"a\":1}");
        assert!(read_line(&mut r, &mut buf).await.unwrap().is_some());
        assert_eq!(buf, b"{\"b\":2}");
        assert!(read_line(&mut r, &mut buf).await.unwrap().is_none());

        let huge = vec![b'x'; MAX_LINE + 10];
        let mut r = tokio::io::BufReader::new(&huge[..]);
        let e = read_line(&mut r, &mut buf).await.unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(buf.len() <= MAX_LINE + 1);
    }

    #[test]
    fn messages_round_trip_and_unknown_fields_are_refused() {
        let m = ClientMsg::Command {
            command: Command::Retry(3),
        };
        let line = encode(&m);
        let back: ClientMsg = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, m);
        assert!(
            serde_json::from_str::<ClientMsg>(
                r#"{"type":"hello","protocol":1,"read_only":false,"x":1}"#
            )
            .is_err()
        );
    }
}
