//! TLS for both ends (feature `tls`): the server's certificate and key, the client's trust
//! roots, built with rustls and its `ring` provider. No process-wide default provider is
//! installed: every configuration here names its provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The only application protocol spoken: the streaming server is HTTP/1.1 (upgrades to
/// SPDY/3.1 and WebSocket do not exist in HTTP/2).
const HTTP_1_1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// What the file should hold (`certificate chain`, `private key`, `CA bundle`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The PEM text is malformed.
    #[error("the {what} {origin} is not valid PEM: {source}")]
    Pem {
        /// What the text should hold.
        what: &'static str,
        /// Where it came from (a path, or `(in memory)`).
        origin: String,
        /// The parser's complaint.
        source: pem::Error,
    },
    /// The PEM text holds no item of the wanted kind.
    #[error("the {what} {origin} contains no {wanted}")]
    Empty {
        /// What the text should hold.
        what: &'static str,
        /// Where it came from (a path, or `(in memory)`).
        origin: String,
        /// The PEM item that was looked for (`CERTIFICATE`, `PRIVATE KEY`).
        wanted: &'static str,
    },
    /// rustls refused the material, e.g. a key that does not match the certificate or a
    /// CA certificate it cannot parse.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being set up.
        what: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Where PEM text came from, for error messages.
enum Origin<'a> {
    File(&'a Path),
    Memory,
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Memory => f.write_str("(in memory)"),
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    what: &'static str,
    origin: &Origin<'_>,
    text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            origin: origin.to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            origin: origin.to_string(),
            wanted: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn private_key(origin: &Origin<'_>, text: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key";
    PrivateKeyDer::from_pem_slice(text).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::Empty {
            what: WHAT,
            origin: origin.to_string(),
            wanted: "PRIVATE KEY (PKCS#8, PKCS#1 or SEC1)",
        },
        source => TlsError::Pem {
            what: WHAT,
            origin: origin.to_string(),
            source,
        },
    })
}

/// The server side of TLS: a rustls [`ServerConfig`] that speaks HTTP/1.1 only. Give it to
/// [`Server::start_tls`](crate::Server::start_tls).
///
/// ```no_run
/// # async fn demo(runtime: std::sync::Arc<dyn cri_streaming::StreamingRuntime>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use cri_streaming::{Config, Server, TlsServerConfig};
///
/// let tls = TlsServerConfig::from_pem_files("/etc/cri/stream.crt", "/etc/cri/stream.key")?;
/// let server = Server::start_tls(runtime, Config::default(), tls).await?;
/// assert!(server.local_addr().ip().is_loopback()); // URLs now start with https://
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("alpn", &"http/1.1")
            .finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// Serves the certificate chain in `cert` (PEM, the server's certificate first, then any
    /// intermediates) with the private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1), with
    /// rustls's safe default protocol versions and no client certificates.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, holds no certificate or key, or the key does not match
    /// the certificate; the error names the file.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = certificates(
            "certificate chain",
            &Origin::File(cert),
            &read("certificate chain", cert)?,
        )?;
        let key = private_key(&Origin::File(key), &read("private key", key)?)?;
        Self::from_parts(chain, key)
    }

    /// Like [`TlsServerConfig::from_pem_files`], from PEM text in memory.
    ///
    /// # Errors
    ///
    /// As [`TlsServerConfig::from_pem_files`].
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates("certificate chain", &Origin::Memory, cert)?;
        let key = private_key(&Origin::Memory, key)?;
        Self::from_parts(chain, key)
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: "TLS protocol versions",
                source,
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Rustls {
                what: "the certificate chain and private key",
                source,
            })?;
        Ok(Self::new(Arc::new(config)))
    }

    /// Uses a rustls configuration built elsewhere (client certificates, a certificate
    /// resolver, another provider...). Its ALPN list is replaced by `http/1.1`, the only
    /// protocol the streaming server speaks.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        if config.alpn_protocols == [HTTP_1_1] {
            return Self { config };
        }
        let mut config = (*config).clone();
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    /// The rustls configuration in use.
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

/// The client side of TLS: which servers to trust. Give it to
/// [`Connector::tls`](crate::Connector::tls).
///
/// ```no_run
/// # fn demo() -> Result<(), cri_streaming::TlsError> {
/// use cri_streaming::{ClientTls, Connector};
///
/// // Trust the CA that signed the streaming server's certificate.
/// let connector = Connector::tls(ClientTls::from_ca_pem_file("/etc/cri/ca.crt")?);
/// # let _ = connector; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    insecure: bool,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("insecure_skip_verify", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates in the PEM file at `path` (and nothing else). The server's
    /// certificate must chain to one of them and name the URL's host (DNS name or IP
    /// address).
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not PEM, holds no certificate, or holds one rustls
    /// cannot use as a trust anchor; the error names the file.
    pub fn from_ca_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        Self::roots(&Origin::File(path), &read("CA bundle", path)?)
    }

    /// Like [`ClientTls::from_ca_pem_file`], from PEM text in memory.
    ///
    /// # Errors
    ///
    /// As [`ClientTls::from_ca_pem_file`].
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::roots(&Origin::Memory, pem)
    }

    fn roots(origin: &Origin<'_>, text: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates("CA bundle", origin, text)? {
            roots.add(cert).map_err(|source| TlsError::Rustls {
                what: "a certificate of the CA bundle",
                source,
            })?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: "TLS protocol versions",
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::with_config(Arc::new(config), false))
    }

    /// Uses a rustls configuration built elsewhere (system roots, client certificates...).
    /// Its ALPN list is replaced by `http/1.1`.
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self::with_config(config, false)
    }

    /// **Dangerous**: accepts any certificate the server presents, for any name, signed by
    /// anyone. The connection is encrypted but not authenticated, so anyone on the path can
    /// impersonate the server and read and change the session (commands, terminal input,
    /// forwarded traffic). Only for testing, or for a server reached over a path that is
    /// already trusted — the equivalent of crictl's or kubectl's
    /// `--insecure-skip-tls-verify`. The handshake's signatures are still checked.
    pub fn insecure_skip_verify() -> Self {
        let provider = provider();
        let verifier = Arc::new(AnyCertificate {
            provider: provider.clone(),
        });
        // Not input-derived: ring's own suites always support the default versions (the
        // unit tests build this configuration).
        #[allow(clippy::expect_used)]
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports rustls's default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self::with_config(Arc::new(config), true)
    }

    fn with_config(config: Arc<ClientConfig>, insecure: bool) -> Self {
        let config = if config.alpn_protocols == [HTTP_1_1] {
            config
        } else {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![HTTP_1_1.to_vec()];
            Arc::new(config)
        };
        Self { config, insecure }
    }

    /// Whether this configuration skips verifying the server (see
    /// [`ClientTls::insecure_skip_verify`]).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The rustls configuration in use.
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs the TLS handshake over `tcp` for `host` (a DNS name or an IP address).
    pub(crate) async fn handshake(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HandshakeError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| HandshakeError::Name)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(HandshakeError::Io)
    }
}

/// Why [`ClientTls::handshake`] failed.
pub(crate) enum HandshakeError {
    /// The host is neither a DNS name nor an IP address.
    Name,
    /// The handshake itself failed (the rustls error is inside).
    Io(std::io::Error),
}

/// The verifier of [`ClientTls::insecure_skip_verify`]: any certificate is accepted, but the
/// handshake signatures must be made by the key of the certificate presented.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let error = TlsServerConfig::from_pem_files("/nonexistent/a.crt", "/nonexistent/a.key")
            .unwrap_err();
        assert!(
            matches!(&error, TlsError::Read { what: "certificate chain", path, .. }
                if path == Path::new("/nonexistent/a.crt")),
            "{error:?}"
        );
        assert!(error.to_string().contains("/nonexistent/a.crt"), "{error}");
        let error = ClientTls::from_ca_pem_file("/nonexistent/ca.crt").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read the CA bundle /nonexistent/ca.crt")
        );
    }

    #[test]
    fn pem_without_the_wanted_items_is_refused() {
        let error = ClientTls::from_ca_pem(b"not pem at all\n").unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Empty {
                    wanted: "CERTIFICATE",
                    ..
                }
            ),
            "{error:?}"
        );
        let error = TlsServerConfig::from_pem(b"", b"").unwrap_err();
        assert!(matches!(
            error,
            TlsError::Empty {
                what: "certificate chain",
                ..
            }
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let error = ClientTls::from_ca_pem(broken).unwrap_err();
        assert!(
            matches!(
                error,
                TlsError::Pem {
                    what: "CA bundle",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn insecure_mode_is_marked_and_speaks_http_1_1() {
        let tls = ClientTls::insecure_skip_verify();
        assert!(tls.is_insecure());
        assert_eq!(tls.rustls_config().alpn_protocols, [HTTP_1_1]);
        assert!(format!("{tls:?}").contains("insecure_skip_verify: true"));
    }
}
