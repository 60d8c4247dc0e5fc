//! Pulling from OCI distribution registries, with `oci-client` as the HTTP/auth layer.
//!
//! This module decides everything else: which endpoints (mirrors, then the registry), which
//! credentials, which platform, how blobs are verified and stored, and how failures become
//! [`Error`]s. `oci-client` fetches manifests and blob streams and runs the Bearer/Basic
//! challenge flow.

use std::sync::Once;

use base64::Engine as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use tokio::io::AsyncWriteExt as _;

use super::config::{Endpoint, RegistryConfig};
use super::fsutil::{TempPath, sha256_digest};
use super::manifest::{self, ACCEPTED_MANIFESTS, Descriptor, Parsed};
use super::reference::Reference;
use super::store::{LayerRecord, NewImage, Record, Store, parse_config};
use super::{Image, unpack};
use crate::{Error, Result};

/// Indexes nested deeper than this are refused.
const MAX_INDEX_DEPTH: usize = 4;
/// Configs and manifests larger than this are refused (they are read into memory).
const MAX_DOCUMENT_SIZE: u64 = 8 << 20;
const USER_AGENT: &str = concat!("cri-oci/", env!("CARGO_PKG_VERSION"));

/// Credentials from a CRI `AuthConfig`.
#[derive(Clone, Debug, Default)]
enum Credentials {
    #[default]
    Anonymous,
    Basic(String, String),
    /// A registry token, sent as is.
    Bearer(String),
    /// An OAuth2 refresh token, exchanged at the registry's token realm.
    Identity(String),
}

impl Credentials {
    fn from_cri(auth: Option<&cri_api::v1::AuthConfig>) -> Result<Self> {
        let Some(auth) = auth else {
            return Ok(Self::Anonymous);
        };
        if !auth.registry_token.is_empty() {
            return Ok(Self::Bearer(auth.registry_token.clone()));
        }
        if !auth.identity_token.is_empty() {
            return Ok(Self::Identity(auth.identity_token.clone()));
        }
        if !auth.username.is_empty() {
            return Ok(Self::Basic(auth.username.clone(), auth.password.clone()));
        }
        if !auth.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.auth.trim())
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.auth.trim())
                })
                .map_err(|e| Error::invalid("auth.auth", format!("not base64: {e}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| Error::invalid("auth.auth", "not UTF-8 once decoded"))?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                Error::invalid("auth.auth", "expected base64 of \"username:password\"")
            })?;
            return Ok(Self::Basic(user.to_string(), pass.to_string()));
        }
        Ok(Self::Anonymous)
    }
}

/// The host an `AuthConfig.server_address` names (`https://index.docker.io/v1/` → `docker.io`).
fn server_host(address: &str) -> String {
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Installs rustls' ring provider as the process default once (a provider the program
/// installed itself is left in place).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) async fn pull(
    store: &Store,
    reference: &str,
    auth: Option<&cri_api::v1::AuthConfig>,
    config: &RegistryConfig,
) -> Result<Image> {
    let reference = Reference::parse(reference)?;
    let endpoints = config.endpoints(reference.registry())?;
    let credentials = Credentials::from_cri(auth)?;
    let server = auth
        .map(|a| server_host(&a.server_address))
        .filter(|s| !s.is_empty());
    install_crypto_provider();

    let mut errors = Vec::new();
    for endpoint in &endpoints {
        // Credentials are for the image's registry; a mirror gets them only when the
        // AuthConfig names it.
        let credentials = if !endpoint.mirror || server.as_deref() == Some(endpoint.host.as_str()) {
            credentials.clone()
        } else {
            Credentials::Anonymous
        };
        match pull_from(store, &reference, endpoint, &credentials, config).await {
            Ok(image) => return Ok(image),
            // Local trouble: another endpoint will not help.
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => {
                tracing::info!(image = %reference, endpoint = %endpoint, error = %e, "pull from endpoint failed");
                errors.push(e);
            }
        }
    }
    // The most telling failure: anything beats "unavailable" (a mirror being down says less
    // than the registry refusing the credentials).
    let position = errors
        .iter()
        .position(|e| !matches!(e, Error::RegistryUnavailable(_)))
        .unwrap_or(errors.len().saturating_sub(1));
    Err(errors.swap_remove(position))
}

/// The oci-client reference for `reference` at `endpoint`, with `digest` instead of the tag
/// when given.
fn client_reference(
    reference: &Reference,
    endpoint: &Endpoint,
    digest: Option<&str>,
) -> oci_client::Reference {
    let registry = endpoint.host.clone();
    let repository = reference.repository().to_string();
    match (digest.or(reference.digest()), reference.tag()) {
        (Some(digest), _) => {
            oci_client::Reference::with_digest(registry, repository, digest.to_string())
        }
        (None, tag) => oci_client::Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or(super::reference::DEFAULT_TAG).to_string(),
        ),
    }
}

fn client(endpoint: &Endpoint, config: &RegistryConfig) -> Result<oci_client::Client> {
    let timeout = (!config.timeout.is_zero()).then_some(config.timeout);
    let mut resolved = endpoint.host.clone();
    if resolved == "docker.io" {
        // oci-client talks to Docker Hub's real host; plain HTTP is decided on it.
        resolved = "index.docker.io".into();
    }
    let client_config = ClientConfig {
        protocol: if endpoint.plain_http {
            ClientProtocol::HttpsExcept(vec![resolved])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        connect_timeout: timeout,
        read_timeout: timeout,
        user_agent: USER_AGENT,
        max_concurrent_download: config.max_concurrent_downloads.max(1),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(client_config).map_err(|e| {
        Error::RegistryUnavailable(format!("{endpoint}: building the HTTP client: {e}"))
    })
}

async fn pull_from(
    store: &Store,
    reference: &Reference,
    endpoint: &Endpoint,
    credentials: &Credentials,
    config: &RegistryConfig,
) -> Result<Image> {
    let name = reference.to_string();
    let client = client(endpoint, config)?;
    let auth = match credentials {
        Credentials::Anonymous => RegistryAuth::Anonymous,
        Credentials::Basic(user, pass) => RegistryAuth::Basic(user.clone(), pass.clone()),
        Credentials::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        Credentials::Identity(token) => {
            RegistryAuth::Bearer(exchange_identity_token(reference, endpoint, token, config).await?)
        }
    };

    // Resolve the reference to one image manifest, through indexes.
    let top = client_reference(reference, endpoint, None);
    let manifests = ManifestFetcher::new(&client, &top, &auth, endpoint, config, &name).await?;
    let bytes = manifests.fetch(&top).await?;
    check_document(&bytes, reference.digest(), &name)?;
    let top_digest = sha256_digest(&bytes);
    let mut indexes: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut bytes, mut digest) = (bytes, top_digest.clone());
    let (config_desc, layers) = loop {
        match manifest::parse(&bytes, &digest)? {
            Parsed::Manifest { config, layers } => break (config, layers),
            Parsed::Index(entries) => {
                if indexes.len() >= MAX_INDEX_DEPTH {
                    return Err(Error::Corrupt {
                        digest,
                        reason: "indexes nested too deep".into(),
                    });
                }
                let entry = manifest::select_platform(&entries, &config.platform, &name)?;
                indexes.push((digest, bytes));
                let r = client_reference(reference, endpoint, Some(&entry.digest));
                let next = manifests.fetch(&r).await?;
                check_document(&next, Some(&entry.digest), &name)?;
                digest = entry.digest;
                bytes = next;
            }
        }
    };
    let manifest_media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
    for layer in &layers {
        manifest::layer_compression(&layer.media_type, &layer.digest)?;
    }
    // Nothing is downloaded for an image bigger than the store allows.
    let max_bytes = store.limits().max_bytes;
    let declared = layers.iter().try_fold(config_desc.size()?, |sum, layer| {
        Ok::<_, Error>(sum.saturating_add(layer.size()?))
    })?;
    if declared > max_bytes {
        return Err(Error::LimitExceeded {
            digest: digest.clone(),
            reason: format!(
                "the manifest declares {declared} bytes of config and layers, over the limit of {max_bytes} bytes"
            ),
        });
    }

    // From here on the GC leaves these blobs alone until the image is recorded.
    let mut lease = store.lease(
        indexes
            .iter()
            .map(|(d, _)| d.as_str())
            .chain([digest.as_str(), config_desc.digest.as_str()])
            .chain(layers.iter().map(|l| l.digest.as_str())),
    );

    let blob_ref = client_reference(reference, endpoint, Some(&digest));
    let config_bytes = if store.has_blob(&config_desc.digest) {
        let path = store.blob_path(&config_desc.digest);
        tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
    } else {
        let data = fetch_small_blob(&client, &blob_ref, &config_desc, &name, endpoint).await?;
        store.write_blob(&config_desc.digest, &data)?;
        data
    };
    let image_config = parse_config(&config_bytes, &config_desc.digest)?;
    let diff_ids = super::store::diff_ids(&image_config, &config_desc.digest, layers.len())?;
    lease.extend(diff_ids.iter().map(String::as_str));

    // Collected first: a lazy `map` over borrowed pairs makes the pull future's `Send`
    // bound depend on a higher-ranked closure type the compiler cannot prove `Send`.
    let jobs: Vec<_> = layers
        .iter()
        .zip(&diff_ids)
        .map(|(layer, diff_id)| {
            fetch_layer(store, &client, &blob_ref, layer, diff_id, &name, endpoint)
        })
        .collect();
    futures_util::stream::iter(jobs)
        .buffer_unordered(config.max_concurrent_downloads.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    for (index_digest, index_bytes) in &indexes {
        store.write_blob(index_digest, index_bytes)?;
    }
    store.write_blob(&digest, &bytes)?;

    let record = Record {
        id: config_desc.digest.clone(),
        manifest: Descriptor {
            media_type: manifest_media_type,
            digest: digest.clone(),
            size: bytes.len() as i64,
            platform: None,
            annotations: Default::default(),
        },
        config: config_desc,
        layers: layers
            .into_iter()
            .zip(diff_ids)
            .map(|(blob, diff_id)| LayerRecord { blob, diff_id })
            .collect(),
        indexes: indexes.into_iter().map(|(d, _)| d).collect(),
        repo_tags: match reference.digest() {
            None => vec![name.clone()],
            Some(_) => Vec::new(),
        },
        repo_digests: vec![reference.with_digest(&top_digest).to_string()],
    };
    let image = store.commit(NewImage {
        record,
        config: image_config,
    })?;
    drop(lease);
    tracing::info!(image = %name, id = %image.id, endpoint = %endpoint, "pulled");
    Ok(image)
}

/// Fetches manifests with a bounded read: `oci-client` reads a whole response into memory
/// before anything can look at its size, so a registry could make a pull buffer an endless
/// body. Auth comes from `oci-client` (its challenge flow and token cache, which its blob
/// downloads share); errors map as its own would.
struct ManifestFetcher<'a> {
    http: reqwest::Client,
    endpoint: &'a Endpoint,
    auth: &'a RegistryAuth,
    /// The Bearer token of the challenge flow, when the registry asked for one.
    token: Option<String>,
    name: &'a str,
}

/// Error bodies are read up to this many bytes (for the message).
const MAX_ERROR_BODY: usize = 64 << 10;

impl<'a> ManifestFetcher<'a> {
    async fn new(
        client: &oci_client::Client,
        image: &oci_client::Reference,
        auth: &'a RegistryAuth,
        endpoint: &'a Endpoint,
        config: &RegistryConfig,
        name: &'a str,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder().user_agent(USER_AGENT);
        if !config.timeout.is_zero() {
            builder = builder
                .connect_timeout(config.timeout)
                .read_timeout(config.timeout);
        }
        let http = builder.build().map_err(|e| {
            Error::RegistryUnavailable(format!("{endpoint}: building the HTTP client: {e}"))
        })?;
        let token = client
            .auth(image, auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| map_error(e, name, endpoint))?;
        Ok(Self {
            http,
            endpoint,
            auth,
            token,
            name,
        })
    }

    /// The manifest `image` names, at most [`MAX_DOCUMENT_SIZE`] bytes (more is
    /// [`Error::Corrupt`], read no further).
    async fn fetch(&self, image: &oci_client::Reference) -> Result<Vec<u8>> {
        let endpoint = self.endpoint;
        let unavailable = |e: &dyn std::error::Error| {
            Error::RegistryUnavailable(format!("{endpoint}: {}", chain(e)))
        };
        let scheme = if endpoint.plain_http { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            image.resolve_registry(),
            image.repository(),
            image
                .digest()
                .or(image.tag())
                .unwrap_or(super::reference::DEFAULT_TAG)
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPTED_MANIFESTS.join(", "));
        request = match (&self.token, self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, pass)) => request.basic_auth(user, Some(pass)),
            (None, _) => request,
        };
        let mut response = request.send().await.map_err(|e| unavailable(&e))?;
        let status = response.status();
        let header_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cap = if status.is_success() {
            MAX_DOCUMENT_SIZE as usize
        } else {
            MAX_ERROR_BODY
        };
        let too_large = |size: u64| Error::Corrupt {
            digest: image.digest().unwrap_or(self.name).to_string(),
            reason: format!(
                "{endpoint}: manifest of {size} bytes or more is too large (the limit is {MAX_DOCUMENT_SIZE})"
            ),
        };
        if status.is_success()
            && let Some(length) = response.content_length()
            && length > MAX_DOCUMENT_SIZE
        {
            return Err(too_large(length));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unavailable(&e))? {
            let room = cap - body.len();
            if chunk.len() > room {
                if status.is_success() {
                    return Err(too_large((body.len() + chunk.len()) as u64));
                }
                body.extend_from_slice(&chunk[..room]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(map_error(
                status_error(status, &body, &url),
                self.name,
                endpoint,
            ));
        }
        // The registry's own digest header, when it sends a sha256 one, must match too.
        if let Some(header) = header_digest.filter(|d| d.starts_with("sha256:")) {
            let actual = sha256_digest(&body);
            if actual != header {
                return Err(Error::Corrupt {
                    digest: header,
                    reason: format!("{endpoint}: the registry sent a manifest hashing to {actual}"),
                });
            }
        }
        Ok(body)
    }
}

/// An HTTP error answer as `oci-client` reports it.
fn status_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError {
            url: url.to_string(),
        };
    }
    if status.is_client_error()
        && let Ok(envelope) = serde_json::from_slice::<oci_client::errors::OciEnvelope>(body)
    {
        return OciDistributionError::RegistryError {
            envelope,
            url: url.to_string(),
        };
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.to_string(),
        message: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Checks a fetched manifest against the digest it was asked by, if any.
fn check_document(bytes: &[u8], expected: Option<&str>, name: &str) -> Result<()> {
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::Corrupt {
            digest: expected.unwrap_or(name).to_string(),
            reason: format!("manifest of {} bytes is too large", bytes.len()),
        });
    }
    if let Some(expected) = expected {
        let actual = sha256_digest(bytes);
        if actual != expected {
            return Err(Error::Corrupt {
                digest: expected.to_string(),
                reason: format!("the registry sent content hashing to {actual}"),
            });
        }
    }
    Ok(())
}

/// Downloads a small blob (a config) into memory, verified.
async fn fetch_small_blob(
    client: &oci_client::Client,
    image: &oci_client::Reference,
    desc: &Descriptor,
    name: &str,
    endpoint: &Endpoint,
) -> Result<Vec<u8>> {
    let expected_size = desc.size()?;
    if expected_size > MAX_DOCUMENT_SIZE {
        return Err(Error::Corrupt {
            digest: desc.digest.clone(),
            reason: format!("config of {expected_size} bytes is too large"),
        });
    }
    let mut stream = client
        .pull_blob_stream(image, desc.digest.as_str())
        .await
        .map_err(|e| map_error(e, name, endpoint))?;
    let mut data = Vec::with_capacity(expected_size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(e, &desc.digest, endpoint))?;
        data.extend_from_slice(&chunk);
        if data.len() as u64 > expected_size {
            return Err(Error::Corrupt {
                digest: desc.digest.clone(),
                reason: format!("the registry sent more than the {expected_size} bytes announced"),
            });
        }
    }
    verify(
        &desc.digest,
        expected_size,
        &sha256_digest(&data),
        data.len() as u64,
    )?;
    Ok(data)
}

/// Makes sure layer `layer` is in the store: downloaded once (per-digest lock), verified
/// against its digest, size and diff id, then renamed into place.
async fn fetch_layer(
    store: &Store,
    client: &oci_client::Client,
    image: &oci_client::Reference,
    layer: &Descriptor,
    diff_id: &str,
    name: &str,
    endpoint: &Endpoint,
) -> Result<()> {
    if store.has_blob(&layer.digest) {
        return Ok(());
    }
    let _guard = store.download_lock(&layer.digest).await;
    if store.has_blob(&layer.digest) {
        // Another pull fetched it while this one waited.
        return Ok(());
    }
    let expected_size = layer.size()?;
    // Removed if anything below fails or this future is dropped (a sibling download failed).
    let tmp = TempPath::new(store.temp_path("layer"));
    let mut stream = client
        .pull_blob_stream(image, layer.digest.as_str())
        .await
        .map_err(|e| map_error(e, name, endpoint))?;
    let file = tokio::fs::File::create(tmp.path())
        .await
        .map_err(|e| Error::io(format!("creating {}", tmp.path().display()), e))?;
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(e, &layer.digest, endpoint))?;
        size += chunk.len() as u64;
        if size > expected_size {
            return Err(Error::Corrupt {
                digest: layer.digest.clone(),
                reason: format!("the registry sent more than the {expected_size} bytes announced"),
            });
        }
        sha2::Digest::update(&mut hasher, &chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
    file.get_ref()
        .sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", tmp.path().display()), e))?;
    drop(file);
    let actual = format!(
        "sha256:{}",
        super::fsutil::hex(&sha2::Digest::finalize(hasher))
    );
    verify(&layer.digest, expected_size, &actual, size)?;
    // The uncompressed content must be what the config promises.
    let (path, media_type, digest, diff_id) = (
        tmp.path().to_path_buf(),
        layer.media_type.clone(),
        layer.digest.clone(),
        diff_id.to_string(),
    );
    let max_bytes = store.limits().max_bytes;
    tokio::task::spawn_blocking(move || {
        unpack::verify_diff_id(&path, &media_type, &digest, &diff_id, max_bytes)
    })
    .await
    .map_err(|e| Error::io("verifying a layer", std::io::Error::other(e)))??;
    store.commit_blob(tmp.path(), &layer.digest)?;
    tmp.keep();
    Ok(())
}

fn verify(expected: &str, expected_size: u64, actual: &str, size: u64) -> Result<()> {
    if actual != expected {
        return Err(Error::Corrupt {
            digest: expected.to_string(),
            reason: format!("the registry sent content hashing to {actual}"),
        });
    }
    if size != expected_size {
        return Err(Error::Corrupt {
            digest: expected.to_string(),
            reason: format!("{size} bytes where the manifest says {expected_size}"),
        });
    }
    Ok(())
}

/// An error while reading a blob stream: a digest mismatch oci-client noticed, or the network.
fn stream_error(e: std::io::Error, digest: &str, endpoint: &Endpoint) -> Error {
    let is_digest = e.get_ref().is_some_and(|inner| {
        inner
            .downcast_ref::<oci_client::errors::DigestError>()
            .is_some()
    });
    if is_digest {
        Error::Corrupt {
            digest: digest.to_string(),
            reason: e.to_string(),
        }
    } else {
        Error::RegistryUnavailable(format!("{endpoint}: reading blob {digest}: {}", chain(&e)))
    }
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Maps oci-client's errors onto this crate's, the kubelet-visible part of a failed pull.
fn map_error(e: OciDistributionError, reference: &str, endpoint: &Endpoint) -> Error {
    let unauthorized = |reason: String| Error::Unauthorized {
        reference: reference.to_string(),
        reason: format!("{endpoint}: {reason}"),
    };
    let not_found = |reason: String| Error::NotInRegistry {
        reference: reference.to_string(),
        reason: format!("{endpoint}: {reason}"),
    };
    let unavailable = |reason: String| Error::RegistryUnavailable(format!("{endpoint}: {reason}"));
    match e {
        OciDistributionError::RequestError(e) => unavailable(chain(&e)),
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(format!("401 Unauthorized for {url}"))
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            unauthorized(format!("token request refused: {}", reason.trim()))
        }
        OciDistributionError::ImageManifestNotFoundError(reason) => not_found(reason),
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let text = format!("{url}: {envelope}");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(text)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                unavailable(text)
            } else {
                not_found(text)
            }
        }
        OciDistributionError::ServerError { code, url, message } => {
            let text = format!("HTTP {code} for {url}: {}", message.trim());
            match code {
                401 | 403 => unauthorized(text),
                404 | 410 => not_found(text),
                _ => unavailable(text),
            }
        }
        OciDistributionError::DigestError(e) => Error::Corrupt {
            digest: reference.to_string(),
            reason: format!("{endpoint}: {e}"),
        },
        OciDistributionError::UnsupportedMediaTypeError(t) => {
            Error::Unsupported(format!("{reference}: media type {t}"))
        }
        other => unavailable(chain(&other)),
    }
}

/// Trades an identity token (an OAuth2 refresh token) for an access token at the realm of
/// the registry's Bearer challenge, as docker and containerd do.
async fn exchange_identity_token(
    reference: &Reference,
    endpoint: &Endpoint,
    refresh_token: &str,
    config: &RegistryConfig,
) -> Result<String> {
    let name = reference.to_string();
    let unavailable =
        |e: &dyn std::error::Error| Error::RegistryUnavailable(format!("{endpoint}: {}", chain(e)));
    let mut builder = reqwest::Client::builder().user_agent(USER_AGENT);
    if !config.timeout.is_zero() {
        builder = builder
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout);
    }
    let http = builder.build().map_err(|e| unavailable(&e))?;
    let host = if endpoint.host == "docker.io" {
        "registry-1.docker.io"
    } else {
        &endpoint.host
    };
    let scheme = if endpoint.plain_http { "http" } else { "https" };
    let ping = http
        .get(format!("{scheme}://{host}/v2/"))
        .send()
        .await
        .map_err(|e| unavailable(&e))?;
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_bearer_challenge)
        .ok_or_else(|| Error::Unauthorized {
            reference: name.clone(),
            reason: format!(
                "{endpoint}: an identity token needs a registry that asks for Bearer tokens"
            ),
        })?;
    let mut form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", refresh_token.to_string()),
        ("client_id", "cri-oci".to_string()),
        (
            "scope",
            format!("repository:{}:pull", reference.repository()),
        ),
    ];
    if let Some(service) = &challenge.service {
        form.push(("service", service.clone()));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http
        .post(&challenge.realm)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| unavailable(&e))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| unavailable(&e))?;
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Error::RegistryUnavailable(format!(
            "{endpoint}: token endpoint answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(Error::Unauthorized {
            reference: name,
            reason: format!(
                "{endpoint}: identity token refused ({status}): {}",
                text.trim()
            ),
        });
    }
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::RegistryUnavailable(format!(
            "{endpoint}: token endpoint answered with bad JSON: {e}"
        ))
    })?;
    json.get("access_token")
        .or_else(|| json.get("token"))
        .and_then(|t| t.as_str())
        .map(String::from)
        .ok_or_else(|| {
            Error::RegistryUnavailable(format!(
                "{endpoint}: token endpoint answered without a token"
            ))
        })
}

/// A `WWW-Authenticate: Bearer realm="...",service="..."` challenge.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_forms() {
        let auth = |f: fn(&mut cri_api::v1::AuthConfig)| {
            let mut a = cri_api::v1::AuthConfig::default();
            f(&mut a);
            Credentials::from_cri(Some(&a))
        };
        assert!(matches!(
            Credentials::from_cri(None),
            Ok(Credentials::Anonymous)
        ));
        assert!(matches!(auth(|_| {}), Ok(Credentials::Anonymous)));
        assert!(matches!(
            auth(|a| { a.username = "u".into(); a.password = "p".into() }),
            Ok(Credentials::Basic(u, p)) if u == "u" && p == "p"
        ));
        // "user:pa:ss" in base64: the password keeps its colon.
        assert!(matches!(
            auth(|a| a.auth = "dXNlcjpwYTpzcw==".into()),
            Ok(Credentials::Basic(u, p)) if u == "user" && p == "pa:ss"
        ));
        assert!(
            matches!(auth(|a| a.registry_token = "t".into()), Ok(Credentials::Bearer(t)) if t == "t")
        );
        assert!(
            matches!(auth(|a| a.identity_token = "r".into()), Ok(Credentials::Identity(t)) if t == "r")
        );
        let err = auth(|a| a.auth = "***".into()).unwrap_err();
        assert!(err.to_string().contains("auth.auth"), "{err}");
        let err = auth(|a| a.auth = "bm9jb2xvbg==".into()).unwrap_err(); // "nocolon"
        assert!(err.to_string().contains("username:password"), "{err}");
    }

    #[test]
    fn bearer_challenges_parse() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_bearer_challenge("bearer realm=http://127.0.0.1:1/token"),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:1/token".into(),
                service: None
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
    }

    #[test]
    fn server_addresses_fold_docker_hub() {
        assert_eq!(server_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            server_host("registry.example:5000"),
            "registry.example:5000"
        );
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
