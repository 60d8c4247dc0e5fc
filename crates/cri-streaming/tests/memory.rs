//! Large outputs stream in bounded memory. Its own test binary, so that no other test's
//! allocations blur the process-wide memory figure.

use std::sync::Arc;

use cri_api::v1::ExecRequest;
use cri_streaming::{
    Config, Server, Session, StreamError, StreamingRuntime, Streams, Transport, async_trait, run,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `big MIB` writes that many MiB to stdout, 64 KiB at a time.
struct Test;

#[async_trait]
impl StreamingRuntime for Test {
    async fn exec(
        &self,
        _container: &str,
        cmd: Vec<String>,
        mut s: Session,
    ) -> Result<i32, StreamError> {
        let mib: usize = cmd[1].parse().unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        if let Some(out) = s.stdout.as_mut() {
            for _ in 0..mib * 16 {
                out.write_all(&chunk)
                    .await
                    .map_err(|e| StreamError::Failed(e.to_string()))?;
            }
        }
        Ok(0)
    }
}

async fn server(config: Config) -> Server {
    Server::start(Arc::new(Test), config).await.unwrap()
}

fn exec(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mib_output_streams_in_bounded_memory() {
    let server = server(Config::default()).await;
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let mut request = exec(&["big", "128"]);
        request.stderr = false;
        let url = server.exec_url(request).unwrap();
        // Count the bytes instead of keeping them: the client must not buffer either.
        let (writer, mut reader) = tokio::io::duplex(64 * 1024);
        let counter = tokio::spawn(async move {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut buf).await.unwrap();
                if n == 0 {
                    return total;
                }
                total += n as u64;
            }
        });
        let before = rss_bytes();
        let code = run(
            &url,
            transport,
            Streams {
                stdout: Some(Box::pin(writer)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let total = counter.await.unwrap();
        let grown = rss_bytes().saturating_sub(before);
        assert_eq!((code, total), (0, 128 << 20), "{transport:?}");
        assert!(
            grown < 64 << 20,
            "{transport:?}: memory grew by {} MiB for 128 MiB streamed",
            grown >> 20
        );
    }
}
