//! `cri-registry`: a read-only OCI registry on loopback serving OCI layout archives, for giving
//! a runtime under test images without the internet. Runs until killed.
//!
//! ```text
//! cargo xtask oci-image --name docker.io/library/busybox:1.35-cri-rs --out /tmp/busybox.tar
//! cri-registry --listen 127.0.0.1:5000 /tmp/busybox.tar
//! cri-registry --listen 127.0.0.1:5000 --auth user:secret /tmp/busybox.tar
//! ```
//!
//! The first line printed is `listening on http://ADDR`; then one `serving REPO:TAG` per image.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cri_testkit::registry::Registry;

#[derive(Parser, Debug)]
#[command(
    name = "cri-registry",
    version,
    about = "Read-only loopback OCI registry serving OCI layout archives"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Require HTTP Basic auth with these credentials (`user:password`).
    #[arg(long, value_name = "USER:PASSWORD")]
    auth: Option<String>,
    /// Require Bearer tokens issued at /token for these credentials (`user:password`).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "auth")]
    token_auth: Option<String>,
    /// OCI image layout archives (tar) to serve.
    #[arg(required = true)]
    archives: Vec<PathBuf>,
}

fn credentials(value: &str) -> Option<(String, String)> {
    value
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = Registry::builder().listen(args.listen);
    for archive in &args.archives {
        builder = builder.archive(archive);
    }
    for (flag, value, token) in [
        ("--auth", &args.auth, false),
        ("--token-auth", &args.token_auth, true),
    ] {
        if let Some(value) = value {
            let Some((user, pass)) = credentials(value) else {
                eprintln!("cri-registry: {flag} wants USER:PASSWORD");
                return ExitCode::from(2);
            };
            builder = if token {
                builder.token_auth(user, pass)
            } else {
                builder.basic_auth(user, pass)
            };
        }
    }
    let registry = match builder.start().await {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("cri-registry: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", registry.endpoint());
    for image in registry.images() {
        println!("serving {image}");
    }
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
