//! A small read-only OCI distribution registry on loopback, serving images from OCI layout
//! archives (as `cargo xtask oci-image` builds them), for testing pulls without the internet.
//!
//! Images are served under the names of their `index.json` annotations
//! (`io.containerd.image.name`, or `org.opencontainers.image.ref.name` when it is a full
//! reference), without the registry host: `docker.io/library/busybox:1.35-cri-rs` is
//! repository `library/busybox`, tag `1.35-cri-rs`. It answers `GET`/`HEAD` for `/v2/`,
//! manifests (by tag or digest, with `Content-Type` and `Docker-Content-Digest`) and blobs,
//! and the distribution error JSON otherwise.
//!
//! Blobs are served as the archive has them, unverified, so a test can serve corrupt content
//! on purpose. Optional auth: HTTP Basic, or Bearer tokens issued at `/token` (the docker
//! token flow, with refresh tokens for OAuth2-style identity tokens).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cri_testkit::registry::RegistryError> {
//! use cri_testkit::registry::Registry;
//!
//! let registry = Registry::builder()
//!     .archive("target/busybox.tar")
//!     .basic_auth("user", "secret")
//!     .start()
//!     .await?;
//! println!("serving {:?} at {}", registry.images(), registry.endpoint());
//! registry.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REALM: &str = "cri-registry";

/// Errors starting a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An archive could not be read, or the address not bound.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An archive is not an OCI image layout the registry understands.
    #[error("{archive}: {reason}")]
    Archive {
        /// The archive's path.
        archive: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How clients must authenticate.
#[derive(Clone, Debug, Default)]
enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        pass: String,
    },
    Token {
        user: String,
        pass: String,
    },
}

/// Builds a [`Registry`].
#[derive(Debug, Default)]
pub struct RegistryBuilder {
    archives: Vec<PathBuf>,
    auth: Auth,
    listen: Option<SocketAddr>,
}

impl RegistryBuilder {
    /// Serves the images of this OCI layout archive (may be called several times).
    pub fn archive(mut self, path: impl Into<PathBuf>) -> Self {
        self.archives.push(path.into());
        self
    }

    /// Requires HTTP Basic auth: requests without these credentials get `401` with
    /// `WWW-Authenticate: Basic realm="cri-registry"`.
    pub fn basic_auth(mut self, user: impl Into<String>, pass: impl Into<String>) -> Self {
        self.auth = Auth::Basic {
            user: user.into(),
            pass: pass.into(),
        };
        self
    }

    /// Requires Bearer tokens, issued at `/token` for these credentials (`GET` with Basic
    /// auth, or `POST` with the `password` or `refresh_token` grant); see
    /// [`Registry::token`] and [`Registry::refresh_token`].
    pub fn token_auth(mut self, user: impl Into<String>, pass: impl Into<String>) -> Self {
        self.auth = Auth::Token {
            user: user.into(),
            pass: pass.into(),
        };
        self
    }

    /// The address to listen on; default `127.0.0.1:0` (a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Loads the archives, binds and starts serving.
    pub async fn start(self) -> Result<Registry, RegistryError> {
        let mut content = Content::default();
        for archive in &self.archives {
            content.load(archive)?;
        }
        let addr = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RegistryError::Io {
                context: format!("binding {addr}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RegistryError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let shared = Arc::new(Shared {
            content,
            auth: self.auth,
            addr,
            token: format!("cri-registry-token-{nonce:x}"),
            refresh_token: format!("cri-registry-refresh-{nonce:x}"),
            requests: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            fail_status: AtomicU16::new(0),
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = state.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            connections.shutdown().await;
        });
        Ok(Registry {
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running loopback registry. Dropping it stops serving; [`Registry::shutdown`] waits.
#[derive(Debug)]
pub struct Registry {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registry {
    /// A builder with no images, no auth, listening on a free loopback port.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `host:port`, what image references and `plain_http` lists name.
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    /// `http://host:port`, what mirror lists name.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The images served, as `repository:tag`, sorted.
    pub fn images(&self) -> Vec<String> {
        self.shared
            .content
            .tags
            .keys()
            .map(|(repo, tag)| format!("{repo}:{tag}"))
            .collect()
    }

    /// How many requests were received.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Every request received, as `METHOD /path` (query included), in order.
    pub fn request_log(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The access token `/token` issues (with [`RegistryBuilder::token_auth`]); a client may
    /// also send it directly, as a CRI `registry_token`.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The refresh token `/token` issues when asked for an offline token, and accepts with the
    /// `refresh_token` grant: what a CRI `identity_token` carries.
    pub fn refresh_token(&self) -> &str {
        &self.shared.refresh_token
    }

    /// From now on, answer every request with this HTTP status (e.g. 503), or serve normally
    /// again with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared
            .fail_status
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What the archives hold.
#[derive(Debug, Default)]
struct Content {
    blobs: HashMap<String, Bytes>,
    /// Digest → media type, for every manifest and index reachable from an `index.json`.
    manifests: HashMap<String, String>,
    /// (repository, tag) → manifest digest.
    tags: BTreeMap<(String, String), String>,
    repositories: std::collections::BTreeSet<String>,
}

impl Content {
    fn load(&mut self, archive: &Path) -> Result<(), RegistryError> {
        let bad = |reason: String| RegistryError::Archive {
            archive: archive.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(archive).map_err(|source| RegistryError::Io {
            context: format!("opening {}", archive.display()),
            source,
        })?;
        let mut tar = tar::Archive::new(std::io::BufReader::new(file));
        let mut index = None;
        let entries = tar.entries().map_err(|e| bad(format!("not a tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("bad tar entry: {e}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|e| bad(format!("bad entry name: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("reading {path}: {e}")))?;
            if path == "index.json" {
                index = Some(data);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                self.blobs
                    .insert(format!("sha256:{hex}"), Bytes::from(data));
            }
        }
        let index = index.ok_or_else(|| bad("no index.json".into()))?;
        let index: serde_json::Value =
            serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
        let entries = index["manifests"]
            .as_array()
            .ok_or_else(|| bad("index.json has no manifests".into()))?;
        for entry in entries {
            let digest = entry["digest"]
                .as_str()
                .ok_or_else(|| bad("index.json entry without a digest".into()))?
                .to_string();
            let media_type = entry["mediaType"].as_str().unwrap_or_default().to_string();
            self.register_manifest(&digest, &media_type, 0);
            let annotations = &entry["annotations"];
            let name = annotations["io.containerd.image.name"]
                .as_str()
                .or_else(|| {
                    annotations["org.opencontainers.image.ref.name"]
                        .as_str()
                        .filter(|n| n.contains(['/', ':']))
                });
            let Some(name) = name else { continue };
            let normalized = crate::normalize_image_reference(name);
            // Drop the registry host: this registry serves every name it is given.
            let (_, path) = normalized.split_once('/').unwrap_or(("", &normalized));
            if let Some((repo, _)) = path.split_once('@') {
                self.repositories.insert(repo.to_string());
            } else if let Some((repo, tag)) = path.rsplit_once(':') {
                self.repositories.insert(repo.to_string());
                self.tags
                    .insert((repo.to_string(), tag.to_string()), digest.clone());
            }
        }
        Ok(())
    }

    /// Remembers the media type of a manifest, and of the children of an index.
    fn register_manifest(&mut self, digest: &str, media_type: &str, depth: usize) {
        let Some(blob) = self.blobs.get(digest) else {
            return;
        };
        let parsed: serde_json::Value = serde_json::from_slice(blob).unwrap_or_default();
        let media_type = match media_type {
            "" => parsed["mediaType"]
                .as_str()
                .unwrap_or(OCI_INDEX)
                .to_string(),
            other => other.to_string(),
        };
        let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
        self.manifests.insert(digest.to_string(), media_type);
        if is_index && depth < 4 {
            for child in parsed["manifests"].as_array().into_iter().flatten() {
                if let Some(d) = child["digest"].as_str() {
                    let t = child["mediaType"].as_str().unwrap_or_default();
                    self.register_manifest(d, t, depth + 1);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    content: Content,
    auth: Auth,
    addr: SocketAddr,
    token: String,
    refresh_token: String,
    requests: AtomicU64,
    log: Mutex<Vec<String>>,
    fail_status: AtomicU16,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn error_reply(status: StatusCode, code: &str, message: &str) -> Reply {
    let body =
        serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] });
    let mut response = reply(status, body.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Reply {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{} {path_and_query}", req.method()));
        let fail = self.fail_status.load(Ordering::Relaxed);
        if fail != 0 {
            let status = StatusCode::from_u16(fail).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return error_reply(status, "UNAVAILABLE", "the registry was told to fail");
        }
        let path = req.uri().path().to_string();
        if path == "/token" {
            return self.token_endpoint(req).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "read-only registry",
            );
        }
        let head = req.method() == Method::HEAD;
        let Some(rest) = path.strip_prefix("/v2") else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "not a distribution API path",
            );
        };
        let rest = rest.trim_start_matches('/');
        if let Some(denied) = self.check_auth(&req, rest) {
            return denied;
        }
        let mut response = if rest.is_empty() {
            let mut r = reply(StatusCode::OK, "{}");
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        } else if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
            self.manifest(name, reference)
        } else if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
            self.blob(name, digest)
        } else {
            error_reply(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown endpoint")
        };
        response.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        if head {
            let (parts, _) = response.into_parts();
            response = Response::from_parts(parts, Full::new(Bytes::new()));
        }
        response
    }

    /// `None` when the request may go on; else the 401 to send.
    fn check_auth(&self, req: &Request<Incoming>, rest: &str) -> Option<Reply> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (ok, challenge) = match &self.auth {
            Auth::None => return None,
            Auth::Basic { user, pass } => (
                basic_credentials(given).is_some_and(|(u, p)| u == *user && p == *pass),
                format!("Basic realm=\"{REALM}\""),
            ),
            Auth::Token { .. } => {
                let name = rest
                    .rsplit_once("/manifests/")
                    .or_else(|| rest.rsplit_once("/blobs/"))
                    .map(|(n, _)| n);
                let scope =
                    name.map_or_else(String::new, |n| format!(",scope=\"repository:{n}:pull\""));
                (
                    given
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| t == self.token),
                    format!(
                        "Bearer realm=\"http://{}/token\",service=\"{REALM}\"{scope}",
                        self.addr
                    ),
                )
            }
        };
        if ok {
            return None;
        }
        let mut response = error_reply(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Some(response)
    }

    async fn token_endpoint(&self, req: Request<Incoming>) -> Reply {
        let Auth::Token { user, pass } = &self.auth else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "this registry issues no tokens",
            );
        };
        let denied = || error_reply(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials");
        let query = req.uri().query().unwrap_or_default().to_string();
        match *req.method() {
            Method::GET => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(basic_credentials);
                if !given.is_some_and(|(u, p)| u == *user && p == *pass) {
                    return denied();
                }
                let offline = form_fields(&query)
                    .get("offline_token")
                    .is_some_and(|v| v == "true");
                self.token_reply(offline)
            }
            Method::POST => {
                let body = match http_body_util::BodyExt::collect(req.into_body()).await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        return error_reply(
                            StatusCode::BAD_REQUEST,
                            "UNSUPPORTED",
                            "unreadable body",
                        );
                    }
                };
                let form = String::from_utf8_lossy(&body).into_owned();
                self.post_token(&form, user, pass).unwrap_or_else(denied)
            }
            _ => error_reply(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "GET or POST"),
        }
    }

    fn post_token(&self, form: &str, user: &str, pass: &str) -> Option<Reply> {
        let fields = form_fields(form);
        let ok = match fields.get("grant_type").map(String::as_str) {
            Some("refresh_token") => fields.get("refresh_token") == Some(&self.refresh_token),
            Some("password") => {
                fields.get("username").map(String::as_str) == Some(user)
                    && fields.get("password").map(String::as_str) == Some(pass)
            }
            _ => false,
        };
        ok.then(|| self.token_reply(true))
    }

    fn token_reply(&self, with_refresh: bool) -> Reply {
        let mut body = serde_json::json!({
            "token": self.token,
            "access_token": self.token,
            "expires_in": 300,
        });
        if with_refresh {
            body["refresh_token"] = serde_json::json!(self.refresh_token);
        }
        let mut response = reply(StatusCode::OK, body.to_string());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    fn manifest(&self, name: &str, reference: &str) -> Reply {
        if !self.content.repositories.contains(name) {
            return error_reply(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            match self
                .content
                .tags
                .get(&(name.to_string(), reference.to_string()))
            {
                Some(digest) => digest.clone(),
                None => {
                    return error_reply(
                        StatusCode::NOT_FOUND,
                        "MANIFEST_UNKNOWN",
                        "manifest unknown",
                    );
                }
            }
        };
        let (Some(media_type), Some(blob)) = (
            self.content.manifests.get(&digest),
            self.content.blobs.get(&digest),
        ) else {
            return error_reply(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        content_reply(blob, media_type, &digest)
    }

    fn blob(&self, name: &str, digest: &str) -> Reply {
        if !self.content.repositories.contains(name) {
            return error_reply(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        match self.content.blobs.get(digest) {
            Some(blob) => content_reply(blob, "application/octet-stream", digest),
            None => error_reply(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
            ),
        }
    }
}

fn content_reply(blob: &Bytes, media_type: &str, digest: &str) -> Reply {
    let mut response = reply(StatusCode::OK, blob.clone());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(digest) {
        headers.insert("Docker-Content-Digest", v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.len()));
    response
}

/// `(user, pass)` of a `Basic` Authorization header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The fields of an `application/x-www-form-urlencoded` string.
fn form_fields(form: &str) -> HashMap<String, String> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
