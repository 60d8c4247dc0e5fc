//! `exec`, `attach` and `port-forward` against a runtime whose streaming server speaks TLS:
//! `--tls-ca`, `--insecure-skip-tls-verify`, and the errors without them.

use std::io::BufRead as _;
use std::sync::Arc;

use cri_streaming::TlsServerConfig;
use cri_testkit::{FakeRuntime, Harness};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{BIN, Out, container_config, pod_config, run};

/// A CA and a server certificate it signed for 127.0.0.1, as PEM: (CA, certificate, key).
fn pki(ca_name: &str) -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The fake runtime behind a cri-server whose streaming server serves TLS.
struct TlsEnv {
    harness: Harness,
    dir: tempfile::TempDir,
    endpoint: String,
}

impl TlsEnv {
    async fn new(cert: &str, key: &str) -> Self {
        let runtime = Arc::new(FakeRuntime::builder().image("busybox").build());
        let tls = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let streaming = cri_streaming::Server::start_tls(runtime.clone(), Default::default(), tls)
            .await
            .unwrap();
        let server = cri_testkit::cri_server::Server::builder()
            .service(runtime)
            .streaming(streaming)
            .build()
            .unwrap();
        let harness = Harness::start(server).await.unwrap();
        let endpoint = harness.endpoint().unwrap();
        Self {
            harness,
            dir: tempfile::tempdir().unwrap(),
            endpoint,
        }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// A running container in a new pod: (pod, container).
    async fn container(&self) -> (String, String) {
        let client = &self.harness.client;
        let logs = self.dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let pod = client
            .run_pod_sandbox(pod_config("p", "default", &logs), "")
            .await
            .unwrap();
        let id = client
            .create_container(
                &pod,
                container_config("shell", &["sleep", "infinity"]),
                Some(pod_config("p", "default", &logs)),
            )
            .await
            .unwrap();
        client.start_container(&id).await.unwrap();
        (pod, id)
    }

    async fn cri(&self, args: &[&str]) -> Out {
        let mut full = vec!["-r", &self.endpoint, "--config", "/dev/null"];
        full.extend(args);
        run(full.into_iter().map(String::from).collect(), Vec::new()).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_verbs_over_tls() {
    let (ca, cert, key) = pki("cluster CA");
    let env = TlsEnv::new(&cert, &key).await;
    let ca = env.write("ca.crt", &ca);
    let (pod, id) = env.container().await;
    let script = "echo out; echo err >&2; exit 3";

    for transport in ["spdy", "websocket"] {
        let out = env
            .cri(&[
                "exec",
                "--tls-ca",
                &ca,
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                script,
            ])
            .await;
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (3, "out\n", "err\n"),
            "{transport}: {out:#?}"
        );
        let out = env
            .cri(&[
                "exec",
                "--insecure-skip-tls-verify",
                "--transport",
                transport,
                &id,
                "sh",
                "-c",
                "echo trusted anyway",
            ])
            .await;
        assert_eq!((out.code, out.ok()), (0, "trusted anyway\n"), "{transport}");
    }
    let out = env.cri(&["attach", "--tls-ca", &ca, &id]).await;
    assert_eq!(out.code, 0, "{out:#?}");

    // port-forward: a local listener forwarding into the "pod" through TLS.
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = service.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = service.accept().await {
            tokio::spawn(async move {
                conn.write_all(b"hello over tls\n").await.unwrap();
            });
        }
    });
    for transport in ["spdy", "websocket"] {
        let mut child = std::process::Command::new(BIN)
            .args(["-r", &env.endpoint, "--config", "/dev/null", "port-forward"])
            .args(["--tls-ca", &ca, "--transport", transport, &pod])
            .arg(format!("0:{remote}"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        })
        .await
        .unwrap();
        let local: std::net::SocketAddr = line
            .strip_prefix("Forwarding from ")
            .and_then(|l| l.split(" -> ").next())
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        let mut conn = tokio::net::TcpStream::connect(local).await.unwrap();
        let mut got = vec![0u8; 15];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"hello over tls\n", "{transport}");
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_are_one_clear_line() {
    let (_, cert, key) = pki("cluster CA");
    let env = TlsEnv::new(&cert, &key).await;
    let (_, id) = env.container().await;

    // No TLS flag: the https URL cannot be used, and the message says what to pass.
    let out = env.cri(&["exec", &id, "true"]).await;
    let line = out.failed();
    assert!(line.contains("https"), "{line}");
    assert!(line.contains("--tls-ca"), "{line}");

    // A CA that did not sign the server's certificate.
    let (other_ca, _, _) = pki("someone else");
    let other_ca = env.write("other.crt", &other_ca);
    let out = env.cri(&["exec", "--tls-ca", &other_ca, &id, "true"]).await;
    let line = out.failed();
    assert!(line.contains("handshake failed"), "{line}");
    assert!(line.contains("invalid peer certificate"), "{line}");

    // A CA file that is not there, or not a certificate.
    let missing = env.dir.path().join("missing.crt");
    let out = env
        .cri(&["attach", "--tls-ca", &missing.display().to_string(), &id])
        .await;
    let line = out.failed();
    assert!(
        line.contains("--tls-ca: cannot read the CA bundle"),
        "{line}"
    );
    assert!(line.contains(&missing.display().to_string()), "{line}");
    let junk = env.write("junk.crt", "not a certificate\n");
    let line = env.cri(&["exec", "--tls-ca", &junk, &id, "true"]).await;
    assert!(
        line.failed().contains("contains no CERTIFICATE"),
        "{line:#?}"
    );

    // The two flags contradict each other: a usage error.
    let out = env
        .cri(&[
            "exec",
            "--tls-ca",
            &junk,
            "--insecure-skip-tls-verify",
            &id,
            "true",
        ])
        .await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("cannot be used with"), "{out:#?}");
}
