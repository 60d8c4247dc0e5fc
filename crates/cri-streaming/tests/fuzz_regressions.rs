//! Crashes of the streaming server found while writing its fuzz targets (fuzz/, targets
//! `websocket_handshake` and `portforward_headers`), kept as regression tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cri_api::v1::PortForwardRequest;
use cri_streaming::{Config, Duplex, Server, Session, StreamError, StreamingRuntime, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Port-forward echoes; exec and attach end at once.
struct Echo;

#[async_trait]
impl StreamingRuntime for Echo {
    async fn exec(&self, _: &str, _: Vec<String>, _: Session) -> Result<i32, StreamError> {
        Ok(0)
    }

    async fn attach(&self, _: &str, _: Session) -> Result<i32, StreamError> {
        Ok(0)
    }

    async fn port_forward(&self, _: &str, _: u16, mut stream: Duplex) -> Result<(), StreamError> {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records panics of any thread (server tasks included) on top of the default report.
fn watch_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default(info);
    }));
}

/// A WebSocket port-forward whose request lists no ports takes them from the `port=` query
/// parameters; each port needs two channels, so only 127 fit in a channel byte. 129 ports
/// overflowed the channel arithmetic (`index * 2` on a `u8`): a panic in the session task
/// (debug builds), wrapped-around channels shared by two ports otherwise. Now refused with
/// 400 before the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_port_forward_with_more_ports_than_channels() {
    watch_panics();
    let server = Server::start(Arc::new(Echo), Config::default())
        .await
        .unwrap();
    let url = server
        .port_forward_url(PortForwardRequest {
            pod_sandbox_id: "p1".into(),
            port: vec![],
        })
        .unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let query: Vec<String> = (0..129).map(|i| format!("port={}", 1000 + i)).collect();
    let request = format!(
        "GET {path}?{} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n",
        query.join("&")
    );
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        // A masked WebSocket close frame (status 1000): the client is done.
        tcp.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2])
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("the server ends the session after the client's close");
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "more ports than channels is a bad request: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "the server panicked on 129 forwarded ports"
    );
}
