//! Network namespaces, for what a runtime does inside a pod's network: port-forward
//! connections.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

/// Connects to `address` from inside the network namespace `netns` (an open
/// `/proc/<pid>/ns/net`, or a bind-mounted pin of one) and returns the connection for
/// Tokio. A TCP socket stays in the namespace it was created in, so the connection works
/// from the caller's namespace afterwards.
///
/// Entering a namespace is per thread: a short-lived thread of its own enters it, connects
/// (for at most `timeout`) and ends, so no thread of the caller's runtime changes namespace.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// let netns = std::fs::File::open("/proc/1234/ns/net")?;
/// let address = std::net::SocketAddr::from(([127, 0, 0, 1], 80));
/// let stream = cri_oci::netns::connect(netns, address, std::time::Duration::from_secs(10)).await?;
/// # drop(stream); Ok(()) }
/// ```
pub async fn connect(
    netns: File,
    address: SocketAddr,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            let connect = || -> io::Result<std::net::TcpStream> {
                rustix::thread::move_into_link_name_space(
                    netns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("entering the pod's network namespace: {e}"),
                    )
                })?;
                std::net::TcpStream::connect_timeout(&address, timeout)
            };
            let _ = sender.send(connect());
        })?;
    let stream = receiver
        .await
        .map_err(|_| io::Error::other("the namespace connect thread died"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}
