//! A warm worker process: the Python of the dbt installation running the worker
//! program, in its own process group, with two pipes for the protocol (requests
//! on fd 3, replies on fd 4) and its stdout and stderr piped like any child's.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::protocol::{Reply, Request, parse_reply};
use crate::dbt::argv::Invocation;
use crate::engine::process::{self, GroupChild};

/// The worker program, shipped inside the binary.
pub(crate) const PROGRAM: &str = include_str!("../../../assets/worker/herd_worker.py");

/// A protocol line longer than this means the worker is broken (a dbt event is
/// cut at 1 MiB by the worker, which escaping can double).
const MAX_REPLY: usize = 8 << 20;

/// The interpreter that runs `dbt`: its script's `#!` line, else the `python`
/// beside it.
pub(crate) fn interpreter(dbt: &Path) -> Result<Vec<String>, String> {
    let head = std::fs::read(dbt)
        .map(|b| b.into_iter().take(512).collect::<Vec<u8>>())
        .map_err(|e| format!("cannot read {}: {e}", dbt.display()))?;
    let text = String::from_utf8_lossy(&head);
    if let Some(line) = text.lines().next().and_then(|l| l.strip_prefix("#!")) {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words.iter().any(|w| w.contains("python")) {
            return Ok(words);
        }
    }
    let beside = dbt.with_file_name("python");
    if beside.is_file() {
        return Ok(vec![beside.display().to_string()]);
    }
    Err(format!(
        "{} is not a Python script, and no python is beside it",
        dbt.display()
    ))
}

/// Runs another worker program instead of the shipped one: for tests that need
/// a worker which misbehaves on purpose.
const PROGRAM_ENV: &str = "DBT_HERD_WORKER_PROGRAM";

/// Writes the worker program where workers can run it; returns its path.
pub(crate) fn install(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    if let Some(other) = std::env::var_os(PROGRAM_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(other));
    }
    let path = dir.join("herd_worker.py");
    std::fs::write(&path, PROGRAM)?;
    Ok(path)
}

pub(crate) struct WorkerProcess {
    pub group: GroupChild,
    requests: std::fs::File,
    /// Replies in order; `Err` once the stream is broken; closed at EOF.
    pub replies: mpsc::Receiver<Result<Reply, String>>,
}

impl WorkerProcess {
    /// Starts `interpreter program` in `cwd` with `env` added.
    pub fn spawn(
        interpreter: &[String],
        program: &Path,
        cwd: &Path,
        env: Vec<(String, String)>,
        name: &str,
    ) -> std::io::Result<Self> {
        let (req_read, req_write) = pipe()?;
        let (rep_read, rep_write) = pipe()?;
        let mut args: Vec<String> = interpreter[1..].to_vec();
        args.extend(["-u".into(), program.display().to_string()]);
        let mut env = env;
        env.push(("HERD_WORKER_FDS".into(), "3,4".into()));
        let inv = Invocation {
            program: PathBuf::from(&interpreter[0]),
            args,
            env,
        };
        let group = process::spawn_with_fds(
            &inv,
            Some(cwd),
            &[(req_read.as_raw_fd(), 3), (rep_write.as_raw_fd(), 4)],
        )?;
        // The child has its own copies; ours would keep the pipes open.
        drop((req_read, rep_write));
        let (tx, replies) = mpsc::channel(256);
        let reader = std::fs::File::from(rep_read);
        std::thread::Builder::new()
            .name(format!("dbt-herd-{name}"))
            .spawn(move || read_replies(reader, &tx))?;
        Ok(Self {
            group,
            requests: std::fs::File::from(req_write),
            replies,
        })
    }

    /// Sends one request. A worker that does not read is stopped or broken; the
    /// pipe buffer holds many requests, so this does not block in practice.
    pub fn send(&mut self, req: &Request) -> std::io::Result<()> {
        self.requests.write_all(&req.line())
    }

    pub fn pgid(&self) -> i32 {
        self.group.pgid
    }
}

fn read_replies(file: std::fs::File, tx: &mpsc::Sender<Result<Reply, String>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::by_ref(&mut reader)
            .take(MAX_REPLY as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.last() != Some(&b'\n') {
            if line.len() > MAX_REPLY {
                Err(format!("a protocol message over {} MiB", MAX_REPLY >> 20))
            } else {
                // EOF in the middle of a message: the worker died mid-write.
                Err("the worker stopped in the middle of a message".into())
            }
        } else {
            parse_reply(&line[..line.len() - 1])
        };
        let broken = reply.is_err();
        if tx.blocking_send(reply).is_err() || broken {
            return;
        }
    }
}

/// A close-on-exec pipe whose ends sit above the descriptor numbers the child
/// is given (3 and 4), so that moving them there cannot clobber one another.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills both descriptors on success; we own them from here.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created by pipe2 and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above(r)?, above(w)?))
}

fn above(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 10 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 11) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from fcntl, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_comes_from_the_shebang_or_the_venv() {
        let dir = tempfile::tempdir().unwrap();
        let dbt = dir.path().join("dbt");
        std::fs::write(&dbt, "#!/venv/bin/python3.11\nimport dbt\n").unwrap();
        assert_eq!(interpreter(&dbt).unwrap(), ["/venv/bin/python3.11"]);
        std::fs::write(&dbt, "#!/usr/bin/env python3\n").unwrap();
        assert_eq!(interpreter(&dbt).unwrap(), ["/usr/bin/env", "python3"]);
        std::fs::write(&dbt, "#!/bin/sh\nexec dbt-real \"$@\"\n").unwrap();
        assert!(interpreter(&dbt).is_err());
        std::fs::write(dir.path().join("python"), "").unwrap();
        assert_eq!(
            interpreter(&dbt).unwrap(),
            [dir.path().join("python").display().to_string()]
        );
    }

    /// A worker that says hello, answers garbage, then writes half a message and
    /// dies: the replies say so, in order, and then end.
    #[tokio::test]
    async fn replies_come_in_order_and_a_broken_stream_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("w.py");
        std::fs::write(
            &program,
            "import os\n\
             out = int(os.environ['HERD_WORKER_FDS'].split(',')[1])\n\
             os.write(out, b'{\"t\":\"hello\",\"proto\":1,\"pid\":1}\\n')\n\
             print('this goes to stdout, not the protocol')\n\
             os.write(out, b'{\"t\":\"done\",\"job\":\"x\",\"ok\":true,\"exit')\n",
        )
        .unwrap();
        let mut w = WorkerProcess::spawn(
            &["python3".to_string()],
            &program,
            dir.path(),
            vec![],
            "test",
        )
        .unwrap();
        let first = w.replies.recv().await.unwrap();
        assert!(
            matches!(first, Ok(Reply::Hello { proto: 1, .. })),
            "{first:?}"
        );
        let second = w.replies.recv().await.unwrap();
        assert!(
            second
                .as_ref()
                .is_err_and(|e| e.contains("middle of a message")),
            "{second:?}"
        );
        assert!(w.replies.recv().await.is_none());
        let _ = w.group.child.wait().await;
        process::unregister(w.pgid());
    }
}
