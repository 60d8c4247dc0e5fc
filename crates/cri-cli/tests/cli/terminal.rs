//! `exec -it` on a real terminal: the `cri` binary runs on the slave side of a pseudo-terminal
//! this test owns, which is how a user's shell runs it.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cri_client::streaming::TerminalSize;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, Winsize, tcgetattr, tcsetwinsize};

use crate::common::{BIN, Env};

/// A pseudo-terminal: the master (the "user") and an open slave (what `cri` gets).
fn pty(rows: u16, cols: u16) -> (std::os::fd::OwnedFd, File) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    set_size(&master, rows, cols);
    (master, slave)
}

fn set_size(master: impl AsFd, rows: u16, cols: u16) {
    tcsetwinsize(
        master,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

fn is_raw(slave: &File) -> bool {
    !tcgetattr(slave)
        .unwrap()
        .local_modes
        .intersects(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG)
}

/// Polls `condition` until it holds; a bound on a liveness wait, not a timing assertion.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_it_goes_raw_follows_the_window_and_restores_the_terminal() {
    let env = Env::new().await;
    let pod = env.pod("tty").await;
    let id = env
        .container(&pod, "shell", &["sleep", "infinity"], true)
        .await;
    for transport in ["spdy", "websocket"] {
        let (master, slave) = pty(40, 100);
        let before = tcgetattr(&slave).unwrap();
        assert!(!is_raw(&slave), "a fresh terminal is cooked");
        let sizes_before = env.fake.terminal_sizes().len();

        let mut child = Command::new(BIN)
            .args(["-r", &env.endpoint, "exec", "-it", "--transport", transport])
            .args([id.as_str(), "sleep", "5"])
            .env_remove("CRI_CONFIG_FILE")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()))
            .spawn()
            .unwrap();
        let fake = env.fake.clone();
        let (_master, slave) = tokio::task::spawn_blocking(move || {
            // While the session runs the terminal is raw: keys go to the container as typed.
            eventually("raw mode during the session", || is_raw(&slave));
            // The window grows; the shell would send SIGWINCH, so the test does.
            set_size(&master, 50, 120);
            rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::WINCH,
            )
            .unwrap();
            eventually("the new size reaches the runtime", || {
                fake.terminal_sizes().contains(&TerminalSize {
                    width: 120,
                    height: 50,
                })
            });
            let status = child.wait().unwrap();
            assert!(status.success(), "{status}");
            (master, slave)
        })
        .await
        .unwrap();

        let sizes = env.fake.terminal_sizes()[sizes_before..].to_vec();
        assert_eq!(
            sizes.first(),
            Some(&TerminalSize {
                width: 100,
                height: 40
            }),
            "{transport}: the session starts with the window's size"
        );
        let after = tcgetattr(&slave).unwrap();
        assert_eq!(
            (after.local_modes, after.input_modes, after.output_modes),
            (before.local_modes, before.input_modes, before.output_modes),
            "{transport}: the terminal is restored"
        );
    }
}
