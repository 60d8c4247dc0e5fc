//! Running commands in a container with `runc exec`: ExecSync here, the streaming forms in
//! `crate::streaming`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cri_api::v1::{ContainerState, ExecSyncResponse};
use cri_server::{Error, Result};
use rustix::process::{WaitId, WaitIdOptions};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Container, Runtime, new_id};
use crate::error;
use crate::monitor::protocol::write_json_atomic;

/// ExecSync's output limit per stream (the kubelet's message size).
const OUTPUT_LIMIT: usize = 16 << 20;

/// How long ExecSync still reads output after `runc exec` has exited (background processes
/// of the command may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The files of one exec: the process JSON and runc's pid file, in a directory removed on drop.
pub(crate) struct ExecFiles {
    pub(crate) dir: PathBuf,
    pub(crate) process: PathBuf,
    pub(crate) pid_file: PathBuf,
}

impl ExecFiles {
    /// The exec'd process's host pid, once runc has written it.
    pub(crate) fn pid(&self) -> Option<rustix::process::Pid> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
    }

    /// Kills the exec'd process (if runc got as far as starting it).
    pub(crate) fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills an exec'd process whose caller went away (so runc, its parent, reaps it and exits).
pub(crate) struct KillOnDrop<'a>(pub(crate) &'a ExecFiles, pub(crate) bool);

impl KillOnDrop<'_> {
    pub(crate) fn disarm(&mut self) {
        self.1 = false;
    }
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.kill();
        }
    }
}

impl Runtime {
    /// A running container by id, or the CRI error for why it is not.
    pub(crate) fn running(&self, id: &str) -> Result<Arc<Container>> {
        let container = self
            .container(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} not found")))?;
        if container.state() != ContainerState::ContainerRunning {
            return Err(Error::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        Ok(container)
    }

    /// Writes the process JSON for `cmd` (the container's own process settings: user, env,
    /// capabilities, cwd...) into a fresh exec directory.
    pub(crate) fn prepare_exec(
        &self,
        container: &Container,
        cmd: &[String],
        tty: bool,
    ) -> Result<ExecFiles> {
        let spec_path = container.dir.join("config.json");
        let spec: oci_spec::runtime::Spec = std::fs::read(&spec_path)
            .map_err(|e| error::io("reading the container's config.json", e))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| Error::internal(format!("the container's config.json: {e}")))
            })?;
        let process = cri_oci::spec::process_for_exec(&spec, cmd, tty).map_err(error::oci)?;
        let dir = container.dir.join(format!("exec-{}", &new_id()?[..16]));
        std::fs::create_dir(&dir).map_err(|e| error::io("creating an exec directory", e))?;
        let files = ExecFiles {
            process: dir.join("process.json"),
            pid_file: dir.join("exec.pid"),
            dir,
        };
        write_json_atomic(&files.process, &process)
            .map_err(|e| error::io("writing the exec process", e))?;
        Ok(files)
    }

    /// `runc exec --detach` for `files`: runc hands its own stdin, stdout and stderr (or the
    /// terminal, through `console_socket`) to the process and exits once it runs; the
    /// process, orphaned, is reparented to this runtime (a child subreaper), which adopts it
    /// ([`Adopted`]). A foreground `runc exec` would instead copy every byte of the output
    /// through its own pipes (a second hop, a fifth of the CPU of a fast stream) and end
    /// only with the output, not with the process.
    pub(crate) fn exec_command(
        &self,
        id: &str,
        files: &ExecFiles,
        console_socket: Option<&Path>,
    ) -> tokio::process::Command {
        let mut command = self.runc.command();
        command.arg("exec").arg("--detach");
        if let Some(socket) = console_socket {
            command.arg("--console-socket").arg(socket);
        }
        command
            .arg("--process")
            .arg(&files.process)
            .arg("--pid-file")
            .arg(&files.pid_file)
            .arg(id);
        command
    }

    /// Runs `cmd` with `runc exec --detach` ([`Runtime::exec_command`]), its stdout and
    /// stderr on our pipes. The command is done when the adopted process exits, not when its
    /// output ends: a background child (`sleep 100 &`) may hold the pipes open for as long as
    /// it lives, so the output is read meanwhile and for a short grace after.
    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let container = self.running(id)?;
        let files = self.prepare_exec(&container, cmd, false)?;
        let mut runc = self
            .exec_command(id, &files, None)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| error::io("running runc exec", e))?;
        let mut guard = KillOnDrop(&files, true);
        let (stdout, stderr) = (runc.stdout.take(), runc.stderr.take());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut process: Option<Adopted> = None;
        let ended = {
            let mut output = pin!(async {
                tokio::join!(read_capped(stdout, &mut out), read_capped(stderr, &mut err))
            });
            let mut drained = false;
            let run = async {
                let status = loop {
                    tokio::select! {
                        status = runc.wait() => break status,
                        _ = &mut output, if !drained => drained = true,
                    }
                };
                let status = status.map_err(|e| error::io("waiting for runc exec", e))?;
                if !status.success() {
                    // runc said why on stderr, which is ours.
                    return Ok(status.code().unwrap_or(255));
                }
                let pid = files
                    .pid()
                    .ok_or_else(|| Error::internal("runc exec wrote no pid for the process"))?;
                let adopted = process.insert(Adopted::new(pid)?);
                loop {
                    tokio::select! {
                        code = adopted.wait() => break code,
                        _ = &mut output, if !drained => drained = true,
                    }
                }
            };
            let ended = if timeout.is_zero() {
                Some(run.await)
            } else {
                tokio::time::timeout(timeout, run).await.ok()
            };
            if ended.is_some() && !drained {
                let _ = tokio::time::timeout(OUTPUT_GRACE, &mut output).await;
            }
            ended
        };
        if let Some(ended) = ended {
            guard.disarm();
            return ended.map(|exit_code| ExecSyncResponse {
                stdout: out,
                stderr: err,
                exit_code,
            });
        }
        // Timed out. While runc runs, the process (if any) is its unreaped child and the pid
        // file names it; once adopted, only the pidfd is used.
        if process.is_none() {
            files.kill();
            guard.disarm();
            let _ = tokio::time::timeout(Duration::from_secs(10), runc.wait()).await;
            if let Some(pid) = files.pid() {
                process = Adopted::new(pid).ok();
            }
        }
        guard.disarm();
        if let Some(mut process) = process {
            process.kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), process.wait()).await;
        }
        Err(Error::deadline_exceeded(format!(
            "command {cmd:?} timed out after {timeout:?}"
        )))
    }
}

/// An exec'd process adopted by this runtime after its `runc exec --detach` exited, held by
/// a pidfd (signals through it cannot reach another process that reuses the pid). A blocking
/// thread waits for and reaps it; dropped before it exits, it is killed.
pub(crate) struct Adopted {
    pidfd: Arc<OwnedFd>,
    waiter: tokio::task::JoinHandle<std::io::Result<i32>>,
}

impl Adopted {
    /// Adopts `pid`, which must be our child (reparented to us): unreaped, its pid is not
    /// reused, so the pidfd names it.
    pub(crate) fn new(pid: rustix::process::Pid) -> Result<Self> {
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|e| error::io("opening a pidfd for the exec'd process", e.into()))?;
        let pidfd = Arc::new(pidfd);
        let fd = pidfd.clone();
        let waiter = tokio::task::spawn_blocking(move || {
            loop {
                match rustix::process::waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED) {
                    Err(rustix::io::Errno::INTR) | Ok(None) => continue,
                    Err(e) => return Err(e.into()),
                    Ok(Some(status)) => {
                        return Ok(match (status.exit_status(), status.terminating_signal()) {
                            (Some(code), _) => code,
                            (None, Some(signal)) => 128 + signal,
                            _ => 255,
                        });
                    }
                }
            }
        });
        Ok(Self { pidfd, waiter })
    }

    /// Waits for the process to exit: its exit code, or 128 + the signal. Call it until it
    /// returns, at most once after.
    pub(crate) async fn wait(&mut self) -> Result<i32> {
        match (&mut self.waiter).await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err(e)) => Err(error::io("waiting for the exec'd process", e)),
            Err(e) => Err(Error::internal(format!(
                "waiting for the exec'd process: {e}"
            ))),
        }
    }

    /// Sends SIGKILL (nothing once it has exited).
    fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&*self.pidfd, rustix::process::Signal::KILL);
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if !self.waiter.is_finished() {
            self.kill();
        }
    }
}

/// Reads everything into `out`, keeping the first [`OUTPUT_LIMIT`] bytes. What was read stays
/// in `out` when the read is abandoned midway.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, out: &mut Vec<u8>) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_capped_but_drained() {
        let big = vec![b'x'; OUTPUT_LIMIT + 1000];
        let mut out = Vec::new();
        read_capped(Some(&big[..]), &mut out).await;
        assert_eq!(out.len(), OUTPUT_LIMIT);
        let mut none = Vec::new();
        read_capped(None::<&[u8]>, &mut none).await;
        assert!(none.is_empty());
    }
}
