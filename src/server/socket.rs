//! The control socket's file: created private (0600, in a 0700 state dir), and
//! reachable however long the state dir's path is (a Unix socket's path is
//! limited to about 100 bytes: longer ones go through the directory's
//! descriptor).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

pub(crate) const SOCKET_FILE: &str = "control.sock";

/// Longest socket path used as it is (sun_path holds 108 bytes with its NUL).
const MAX_DIRECT: usize = 100;

/// A path that names `path` and fits a socket address: `path` itself when short
/// enough, else the same name through an open descriptor of its directory
/// (returned too: the name is good while it is open).
fn short_path(path: &Path) -> std::io::Result<(PathBuf, Option<File>)> {
    if path.as_os_str().len() <= MAX_DIRECT {
        return Ok((path.to_path_buf(), None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((path.to_path_buf(), None));
    };
    let d = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
    Ok((short, Some(d)))
}

/// Listens on `path`, replacing a file left there by a run that died (the
/// caller holds the state dir's lock, so no live run owns it).
pub(crate) fn listen(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let (short, _dir) = short_path(path)?;
    let listener = UnixListener::bind(&short)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(crate) async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    let (short, _dir) = short_path(path)?;
    UnixStream::connect(&short).await
}

/// Whether the peer runs as this process's user.
pub(crate) fn same_user(stream: &UnixStream) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    stream.peer_cred().is_ok_and(|c| c.uid() == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_in_a_deep_dir_is_reachable_and_private() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join(SOCKET_FILE);
        assert!(path.as_os_str().len() > 108);
        let listener = listen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (client, server) = tokio::join!(connect(&path), listener.accept());
        let (server, _) = server.unwrap();
        assert!(same_user(&server));
        drop(client.unwrap());
        // A second listen replaces the file a dead run left.
        drop(listener);
        assert!(listen(&path).is_ok());
    }
}
