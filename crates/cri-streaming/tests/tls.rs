//! TLS (feature `tls`): our client against our server over https, with certificates made
//! here: a CA and a server certificate for 127.0.0.1. Exec over SPDY and WebSocket,
//! port-forward, trust failures, insecure mode, and clients that do not speak TLS.

use std::sync::Arc;

use cri_api::v1::{ExecRequest, PortForwardRequest};
use cri_streaming::{
    ClientError, ClientTls, Config, Connector, Duplex, PortForward, Server, Session, StreamError,
    StreamingRuntime, Streams, TlsError, TlsServerConfig, Transport, Writer, async_trait, run,
    run_with,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Commands: `echo ARGS`, `exit N`, `cat` (stdin to stdout).
struct Test;

fn failed(e: std::io::Error) -> StreamError {
    StreamError::Failed(e.to_string())
}

#[async_trait]
impl StreamingRuntime for Test {
    async fn exec(
        &self,
        _container: &str,
        cmd: Vec<String>,
        mut s: Session,
    ) -> Result<i32, StreamError> {
        match cmd[0].as_str() {
            "echo" => {
                if let Some(out) = s.stdout.as_mut() {
                    out.write_all(format!("{}\n", cmd[1..].join(" ")).as_bytes())
                        .await
                        .map_err(failed)?;
                }
                Ok(0)
            }
            "exit" => Ok(cmd[1].parse().unwrap()),
            "cat" => {
                if let (Some(input), Some(out)) = (s.stdin.as_mut(), s.stdout.as_mut()) {
                    tokio::io::copy(input, out).await.map_err(failed)?;
                }
                Ok(0)
            }
            other => Err(StreamError::Failed(format!("unknown command {other}"))),
        }
    }

    async fn port_forward(
        &self,
        _sandbox: &str,
        port: u16,
        mut stream: Duplex,
    ) -> Result<(), StreamError> {
        // An echo service that greets with its port.
        stream
            .write_all(format!("port {port}\n").as_bytes())
            .await
            .map_err(failed)?;
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.map_err(failed)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n]).await.map_err(failed)?;
        }
    }
}

/// A CA, and a server certificate it signed for the IP address 127.0.0.1.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(ca_name: &str) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "streaming server");
        let cert = server.signed_by(&key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server_config(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    fn connector(&self) -> Connector {
        Connector::tls(ClientTls::from_ca_pem(self.ca_pem.as_bytes()).unwrap())
    }
}

async fn tls_server(pki: &Pki) -> Server {
    Server::start_tls(Arc::new(Test), Config::default(), pki.server_config())
        .await
        .unwrap()
}

fn exec(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    }
}

/// A writer whose bytes are collected; the handle yields them once the writer is dropped.
fn capture() -> (Writer, JoinHandle<Vec<u8>>) {
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        out
    });
    (Box::pin(writer), task)
}

/// Runs `cmd` with a stdout capture; returns the exit code (or error) and the output.
async fn exec_with(
    server: &Server,
    cmd: &[&str],
    transport: Transport,
    connector: &Connector,
) -> (Result<i32, ClientError>, Vec<u8>) {
    let url = server.exec_url(exec(cmd)).unwrap();
    let (stdout, output) = capture();
    let streams = Streams {
        stdout: Some(stdout),
        ..Default::default()
    };
    let result = run_with(&url, transport, streams, connector).await;
    (result, output.await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_spdy_and_websocket() {
    let pki = Pki::new("test CA");
    let server = tls_server(&pki).await;
    let connector = pki.connector();
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = server.exec_url(exec(&["echo", "x"])).unwrap();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");

        let (code, out) = exec_with(&server, &["echo", "over", "tls"], transport, &connector).await;
        assert_eq!(code.unwrap(), 0, "{transport:?}");
        assert_eq!(out, b"over tls\n", "{transport:?}");

        let (code, _) = exec_with(&server, &["exit", "7"], transport, &connector).await;
        assert_eq!(code.unwrap(), 7, "{transport:?}");

        // stdin through TLS, half-closed at its end (SPDY FIN, WebSocket v5 close).
        let mut request = exec(&["cat"]);
        request.stdin = true;
        let url = server.exec_url(request).unwrap();
        let (stdout, output) = capture();
        let input: &'static [u8] = b"typed over TLS\n";
        let streams = Streams {
            stdin: Some(Box::pin(input)),
            stdout: Some(stdout),
            ..Default::default()
        };
        let code = run_with(&url, transport, streams, &connector)
            .await
            .unwrap();
        assert_eq!((code, output.await.unwrap()), (0, input.to_vec()));
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_over_spdy_and_websocket() {
    let pki = Pki::new("test CA");
    let server = tls_server(&pki).await;
    let connector = pki.connector();
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = server
            .port_forward_url(PortForwardRequest {
                pod_sandbox_id: "p1".into(),
                port: vec![8080],
            })
            .unwrap();
        assert!(url.starts_with("https://"), "{url}");
        let forward = PortForward::start_with(&url, transport, &[8080], &connector)
            .await
            .unwrap();
        let mut conn = forward.connect(8080).await.unwrap();
        let mut greeting = [0u8; 10];
        conn.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"port 8080\n", "{transport:?}");
        conn.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        conn.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping", "{transport:?}");
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_or_misnamed_certificates_are_refused() {
    let pki = Pki::new("test CA");
    let server = tls_server(&pki).await;
    // A client trusting another CA.
    let stranger = Pki::new("another CA").connector();
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let (result, out) = exec_with(&server, &["echo", "x"], transport, &stranger).await;
        let error = result.unwrap_err();
        let ClientError::Tls { source, .. } = &error else {
            panic!("{transport:?}: {error:?}");
        };
        let reason = source.as_ref().expect("the handshake error").to_string();
        assert!(reason.contains("invalid peer certificate"), "{reason}");
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        assert!(out.is_empty());
    }
    // The right CA, but the URL names a host the certificate does not (it is for the IP).
    let url = server
        .exec_url(exec(&["echo", "x"]))
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let streams = Streams::default();
    let error = run_with(&url, Transport::Spdy, streams, &pki.connector())
        .await
        .unwrap_err();
    let source = std::error::Error::source(&error).map(ToString::to_string);
    let message = format!("{error}: {}", source.unwrap_or_default());
    assert!(matches!(error, ClientError::Tls { .. }), "{message}");
    assert!(message.contains("not valid for name"), "{message}");
    // And the server still serves a client that trusts it.
    let (code, out) = exec_with(&server, &["echo", "ok"], Transport::Spdy, &pki.connector()).await;
    assert_eq!((code.unwrap(), out), (0, b"ok\n".to_vec()));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_mode_accepts_any_certificate() {
    let pki = Pki::new("nobody trusts me");
    let server = tls_server(&pki).await;
    let insecure = ClientTls::insecure_skip_verify();
    assert!(insecure.is_insecure());
    let connector = Connector::tls(insecure);
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let (code, out) = exec_with(&server, &["echo", "trusting"], transport, &connector).await;
        assert_eq!(
            (code.unwrap(), out),
            (0, b"trusting\n".to_vec()),
            "{transport:?}"
        );
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_tls_fail_cleanly_and_sessions_go_on() {
    let pki = Pki::new("test CA");
    let server = tls_server(&pki).await;
    let connector = pki.connector();

    // A TLS session that stays open (stdin not yet closed) while bad clients come and go.
    let mut request = exec(&["cat"]);
    request.stdin = true;
    let url = server.exec_url(request).unwrap();
    let (stdin, mut typing) = tokio::io::duplex(1024);
    let (stdout, output) = capture();
    let streams = Streams {
        stdin: Some(Box::pin(stdin)),
        stdout: Some(stdout),
        ..Default::default()
    };
    let session = {
        let connector = connector.clone();
        tokio::spawn(async move { run_with(&url, Transport::Spdy, streams, &connector).await })
    };
    typing.write_all(b"before ").await.unwrap();

    // Plain HTTP on the TLS port: a 400 that says why, over SPDY's upgrade and WebSocket's.
    let plain = server
        .exec_url(exec(&["echo", "x"]))
        .unwrap()
        .replace("https://", "http://");
    match run(&plain, Transport::Spdy, Streams::default()).await {
        Err(ClientError::Refused { status: 400, body }) => {
            assert!(body.contains("HTTP request to an HTTPS server"), "{body}")
        }
        other => panic!("{other:?}"),
    }
    let error = run(&plain, Transport::WebSocket, Streams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::WebSocket(m) if m.contains("400")),
        "{error:?}"
    );

    // An https URL with a connector that has no TLS: refused before connecting.
    let https = server.exec_url(exec(&["echo", "x"])).unwrap();
    let error = run(&https, Transport::Spdy, Streams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Tls { source: None, .. }),
        "{error:?}"
    );

    // Garbage that starts like a TLS record, then a silent client that hangs up.
    let addr = server.local_addr();
    let mut junk = tokio::net::TcpStream::connect(addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = junk.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP"), "{answer:?}");
    drop(tokio::net::TcpStream::connect(addr).await.unwrap());

    // The open session is undisturbed, and new TLS sessions are served.
    typing.write_all(b"and after\n").await.unwrap();
    drop(typing);
    let code = session.await.unwrap().unwrap();
    assert_eq!(
        (code, output.await.unwrap()),
        (0, b"before and after\n".to_vec())
    );
    let (code, out) = exec_with(
        &server,
        &["echo", "still", "here"],
        Transport::WebSocket,
        &connector,
    )
    .await;
    assert_eq!((code.unwrap(), out), (0, b"still here\n".to_vec()));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_against_a_plain_server_fails_cleanly() {
    let server = Server::start(Arc::new(Test), Config::default())
        .await
        .unwrap();
    let url = server
        .exec_url(exec(&["echo", "x"]))
        .unwrap()
        .replace("http://", "https://");
    let error = run_with(
        &url,
        Transport::Spdy,
        Streams::default(),
        &Pki::new("CA").connector(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::Tls {
                source: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    server.shutdown();
}

#[test]
fn pem_files_load_and_bad_ones_are_named() {
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert = write("server.crt", &pki.cert_pem);
    let key = write("server.key", &pki.key_pem);
    let ca = write("ca.crt", &pki.ca_pem);
    let config = TlsServerConfig::from_pem_files(&cert, &key).unwrap();
    assert_eq!(
        config.rustls_config().alpn_protocols,
        [b"http/1.1".to_vec()]
    );
    let client = ClientTls::from_ca_pem_file(&ca).unwrap();
    assert!(!client.is_insecure());

    // A key that is not the certificate's.
    let other = write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    let error = TlsServerConfig::from_pem_files(&cert, &other).unwrap_err();
    assert!(matches!(error, TlsError::Rustls { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("certificate chain and private key"),
        "{error}"
    );
    // The files swapped: no certificate where one is expected, no key where one is.
    let error = TlsServerConfig::from_pem_files(&key, &cert).unwrap_err();
    assert!(
        matches!(&error, TlsError::Empty { what: "certificate chain", origin, .. }
            if origin == &key.display().to_string()),
        "{error:?}"
    );
    let error = TlsServerConfig::from_pem_files(&cert, &cert).unwrap_err();
    assert!(
        matches!(
            error,
            TlsError::Empty {
                what: "private key",
                ..
            }
        ),
        "{error:?}"
    );
    let error = ClientTls::from_ca_pem_file(dir.path().join("missing.crt")).unwrap_err();
    assert!(error.to_string().contains("missing.crt"), "{error}");
}
