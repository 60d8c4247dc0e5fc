//! The streaming server's in-process ceiling: a large stdout through exec sessions served by
//! a runtime that writes zeros (no container behind it), read by our client, in MiB/s, with
//! the CPU time the process spent per GiB (user + system, both ends of the session).
//!
//! It is the limit of the server and client alone, not a comparison with any runtime; for
//! that, with a real container under runc-runtime and under containerd, run
//! `cargo bench -p runc-runtime --bench streaming`.
//!
//! Run: `cargo bench -p cri-client --bench streaming`. `STREAM_MIB` (default 256) sets the
//! bytes per session, `STREAM_ROUNDS` (default 5) the sessions per transport, and
//! `STREAM_ONLY=spdy` or `websocket` one transport (e.g. to profile it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cri_client::cri_api::v1::*;
use cri_client::streaming::{Streams, Transport};
use cri_streaming::{Session, StreamError, StreamingRuntime, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// Writes `bytes` zeros to stdout in 64 KiB writes.
struct Zeros {
    bytes: AtomicUsize,
}

#[async_trait]
impl StreamingRuntime for Zeros {
    async fn exec(&self, _: &str, _: Vec<String>, mut s: Session) -> Result<i32, StreamError> {
        let chunk = vec![0u8; 64 * 1024];
        let mut left = self.bytes.load(Ordering::Relaxed);
        if let Some(out) = s.stdout.as_mut() {
            while left > 0 {
                let n = left.min(chunk.len());
                out.write_all(&chunk[..n])
                    .await
                    .map_err(|e| StreamError::Failed(e.to_string()))?;
                left -= n;
            }
        }
        Ok(0)
    }
}

/// One session whose stdout is counted and thrown away: the bytes and the seconds it took.
async fn session(url: &str, transport: Transport) -> (usize, f64) {
    let (writer, mut reader) = tokio::io::duplex(256 * 1024);
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    let started = Instant::now();
    let code = cri_streaming::run(
        url,
        transport,
        Streams {
            stdout: Some(Box::pin(writer)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let total = counter.await.unwrap();
    assert_eq!(code, 0);
    (total, started.elapsed().as_secs_f64())
}

/// User + system CPU seconds this process has used, all threads (`/proc/self/stat`, in
/// ticks of 1/100 s, Linux's `USER_HZ`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let ticks: u64 = rest
        .split(' ')
        .skip(11) // utime and stime are fields 14 and 15; `rest` starts at field 3
        .take(2)
        .map(|t| t.parse::<u64>().expect("a tick count"))
        .sum();
    ticks as f64 / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let bytes = env_usize("STREAM_MIB", 256) << 20;
    let rounds = env_usize("STREAM_ROUNDS", 5);
    let only = std::env::var("STREAM_ONLY").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Arc::new(Zeros {
            bytes: AtomicUsize::new(bytes),
        });
        let ours = cri_streaming::Server::start(runtime, cri_streaming::Config::default())
            .await
            .unwrap();
        let request = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["zeros".into()],
            stdout: true,
            ..Default::default()
        };
        println!(
            "\nin-process ceiling of the streaming server and client (no container): {} MiB of \
             stdout per session, median of {rounds}",
            bytes >> 20
        );
        println!("{:<10} {:>8} {:>14}", "transport", "MiB/s", "CPU s per GiB");
        for transport in [Transport::Spdy, Transport::WebSocket] {
            let name = format!("{transport:?}").to_lowercase();
            if !only.is_empty() && !only.eq_ignore_ascii_case(&name) {
                continue;
            }
            let (mut rates, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let url = ours.exec_url(request.clone()).unwrap();
                let before = cpu_seconds();
                let (moved, secs) = session(&url, transport).await;
                assert_eq!(moved, bytes, "all bytes arrived");
                let gib = bytes as f64 / (1u64 << 30) as f64;
                cpu.push((cpu_seconds() - before) / gib);
                rates.push(bytes as f64 / (1 << 20) as f64 / secs);
            }
            println!(
                "{:<10} {:>8.0} {:>14.2}",
                format!("{transport:?}"),
                median(rates),
                median(cpu)
            );
        }
    });
}
