//! Where Unix sockets are bound, secured and cleaned up.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::Error;

fn io_error(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Removes the socket file when dropped, unless another server has replaced it since.
#[derive(Debug)]
pub(crate) struct SocketGuard {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a listener at `path` with permission bits `mode`.
///
/// Creates missing parent directories. An existing socket file is removed only when nothing
/// listens on it (a stale socket of a crashed server); a live one is never stolen. A path
/// that exists and is not a socket is left alone and reported.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketGuard), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(io_error(format!("creating {}", parent.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(Error::SocketInUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale socket");
                    std::fs::remove_file(path).map_err(io_error(format!(
                        "removing stale socket {}",
                        path.display()
                    )))?;
                }
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("probing existing socket {}", path.display()),
                        source: e,
                    });
                }
            }
        }
        Ok(_) => {
            return Err(Error::Io {
                context: format!("{} exists and is not a socket", path.display()),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Io {
                context: format!("inspecting {}", path.display()),
                source: e,
            });
        }
    }
    let listener = match staging_path(path) {
        Some(staging) => bind_staged(path, &staging, mode)?,
        None => {
            let listener = UnixListener::bind(path)
                .map_err(io_error(format!("binding {}", path.display())))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                io_error(format!("setting mode {mode:o} on {}", path.display())),
            )?;
            listener
        }
    };
    let meta = std::fs::symlink_metadata(path)
        .map_err(io_error(format!("inspecting {}", path.display())))?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
    };
    Ok((listener, guard))
}

/// The longest path a Unix socket address holds (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A hidden name beside `path` to bind at first, when it fits in a socket address.
fn staging_path(path: &Path) -> Option<std::path::PathBuf> {
    let name = path.file_name()?.to_string_lossy();
    let staging = path.with_file_name(format!(".{name}.{}.binding", std::process::id()));
    (staging.as_os_str().len() <= MAX_SOCKET_PATH).then_some(staging)
}

/// Binds and listens at `staging`, sets the mode, then links the socket to `path`: clients
/// never see the path before it accepts connections or before it has its final mode (no
/// `ECONNREFUSED` window at startup). The link fails instead of replacing a socket that
/// another server put at `path` meanwhile.
fn bind_staged(path: &Path, staging: &Path, mode: u32) -> Result<UnixListener, Error> {
    let _ = std::fs::remove_file(staging);
    let listener =
        UnixListener::bind(staging).map_err(io_error(format!("binding {}", staging.display())))?;
    let linked = std::fs::set_permissions(staging, std::fs::Permissions::from_mode(mode))
        .map_err(io_error(format!(
            "setting mode {mode:o} on {}",
            staging.display()
        )))
        .and_then(|()| {
            std::fs::hard_link(staging, path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::SocketInUse(path.to_path_buf())
                } else {
                    Error::Io {
                        context: format!("linking {} to {}", staging.display(), path.display()),
                        source: e,
                    }
                }
            })
        });
    let _ = std::fs::remove_file(staging);
    linked.map(|()| listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_socket_appears_listening_with_its_mode_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let (_listener, guard) = bind(&path, 0o600).unwrap();
        assert_eq!(entries(dir.path()), ["cri.sock"], "no staging file is left");
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).expect("listening once visible");
        drop(guard);
        assert!(
            entries(dir.path()).is_empty(),
            "the guard removes the socket"
        );
    }

    #[tokio::test]
    async fn a_path_too_long_to_stage_is_bound_directly() {
        let dir = tempfile::tempdir().unwrap();
        let room = MAX_SOCKET_PATH - dir.path().as_os_str().len() - 1;
        let path = dir.path().join("s".repeat(room));
        assert!(staging_path(&path).is_none());
        let (_listener, _guard) = bind(&path, 0o660).unwrap();
        std::os::unix::net::UnixStream::connect(&path).expect("listening");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }

    #[tokio::test]
    async fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let (_listener, _guard) = bind(&path, 0o660).unwrap();
        assert!(matches!(bind(&path, 0o660), Err(Error::SocketInUse(_))));
        assert_eq!(entries(dir.path()), ["cri.sock"]);
    }
}
