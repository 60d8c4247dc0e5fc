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
    let listener =
        UnixListener::bind(path).map_err(io_error(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(
        format!("setting mode {mode:o} on {}", path.display()),
    ))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(io_error(format!("inspecting {}", path.display())))?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
    };
    Ok((listener, guard))
}
