//! Receiving a terminal's master from runc over a console socket.
//!
//! With `--console-socket PATH`, runc connects to PATH once it has created the container's
//! pty and sends the master descriptor as `SCM_RIGHTS` ancillary data. The same mechanism
//! serves the monitor (`runc create`) and the runtime (`runc exec -d -t`).

use std::fs::File;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

use super::{Io, receiver, sender};

/// The socket file's name in the directory it is bound in.
const SOCKET_NAME: &str = "console.sock";

/// A bound console socket.
pub(crate) struct Listener {
    listener: UnixListener,
    /// How another process (runc) names the socket.
    path: PathBuf,
    /// Where to remove it from when done.
    cleanup: PathBuf,
    _dir: File,
}

impl Listener {
    /// Binds `console.sock` in the directory open as `dir` (named through `/proc` so the
    /// address stays short whatever the directory's path).
    pub(crate) fn bind(dir: &File) -> io::Result<Self> {
        let dir = dir.try_clone()?;
        let ours = super::short_path(&dir, SOCKET_NAME);
        let _ = std::fs::remove_file(&ours);
        let listener = std::os::unix::net::UnixListener::bind(&ours)?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}/{SOCKET_NAME}",
            std::process::id(),
            dir.as_raw_fd()
        ));
        Ok(Self {
            listener,
            cleanup: ours,
            path,
            _dir: dir,
        })
    }

    /// The path to hand to `runc --console-socket`.
    pub(crate) fn path_for_others(&self) -> &std::path::Path {
        &self.path
    }

    /// Receives the master while `runc` (the future) runs; fails with runc's error, or when
    /// runc succeeded without sending a terminal.
    pub(crate) async fn receive_while(
        self,
        runc: impl Future<Output = Result<(), String>>,
    ) -> Result<OwnedFd, String> {
        let accept = async {
            let (stream, _) = self.listener.accept().await?;
            receive_fd(&stream).await
        };
        tokio::pin!(accept);
        tokio::pin!(runc);
        let mut master = None;
        let outcome = loop {
            tokio::select! {
                received = &mut accept, if master.is_none() => master = Some(received),
                finished = &mut runc => break finished,
            }
        };
        let result = match (outcome, master) {
            (Err(message), _) => Err(message),
            (Ok(()), Some(received)) => received.map_err(|e| format!("receiving the pty: {e}")),
            (Ok(()), None) => tokio::time::timeout(Duration::from_secs(5), accept)
                .await
                .map_err(|_| "runc finished without sending the terminal".to_string())?
                .map_err(|e| format!("receiving the pty: {e}")),
        };
        let _ = std::fs::remove_file(&self.cleanup);
        result
    }
}

/// Reads one message from `stream` and returns the descriptor it carries.
pub(crate) async fn receive_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    loop {
        stream.readable().await?;
        let mut data = [0u8; 4096];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let received = stream.try_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [io::IoSliceMut::new(&mut data)];
            rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
                .map_err(io::Error::from)?;
            let mut fd = None;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    for received in fds {
                        // Keep the first; any other is closed on drop.
                        if fd.is_none() {
                            fd = Some(received);
                        }
                    }
                }
            }
            Ok(fd)
        });
        match received {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the console message carried no descriptor",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The master as the monitor's stdio: a reader, a writer, and the descriptor for resizes.
pub(super) fn into_io(master: OwnedFd) -> io::Result<Io> {
    let reader = receiver(rustix::io::fcntl_dupfd_cloexec(&master, 3)?)?;
    let writer = sender(rustix::io::fcntl_dupfd_cloexec(&master, 3)?)?;
    Ok(Io::Tty {
        master: Arc::new(master),
        reader,
        writer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

    #[tokio::test]
    async fn a_descriptor_sent_over_the_socket_arrives() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let std_fd: std::os::fd::BorrowedFd<'_> = std::os::fd::AsFd::as_fd(&file);
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [std_fd];
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &theirs,
            &[io::IoSlice::new(b"/dev/pts/9")],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = UnixStream::from_std(ours).unwrap();
        let received = receive_fd(&ours).await.unwrap();
        let a = rustix::fs::fstat(&received).unwrap();
        let b = rustix::fs::fstat(&file).unwrap();
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }

    #[tokio::test]
    async fn runc_failing_before_it_connects_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let handle = File::open(dir.path()).unwrap();
        let listener = Listener::bind(&handle).unwrap();
        assert!(listener.path_for_others().starts_with("/proc/"));
        let err = listener
            .receive_while(async { Err("runc: no such image".to_string()) })
            .await
            .unwrap_err();
        assert_eq!(err, "runc: no such image");
        assert!(!dir.path().join(SOCKET_NAME).exists(), "socket removed");
    }
}
