//! Shared bits of the examples (logging setup). The examples themselves are the files next
//! to this one; run them with `cargo run -p cri-examples --example NAME`.

/// Logs to stderr at `info` (override with `RUST_LOG`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
