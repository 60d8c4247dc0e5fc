//! Channel numbers of exec and attach, and the v5 CLOSE channel.
//!
//! Port-forward numbers its channels per forwarded port instead; see
//! [`portforward`](super::portforward).

/// Standard input, client to server.
pub const STDIN: u8 = 0;
/// Standard output, server to client.
pub const STDOUT: u8 = 1;
/// Standard error, server to client.
pub const STDERR: u8 = 2;
/// Error channel, server to client: the final status (a JSON `Status` from v4 on, plain
/// text before).
pub const ERROR: u8 = 3;
/// Terminal resize, client to server: one JSON `{"Width":W,"Height":H}` per message.
pub const RESIZE: u8 = 4;
/// `v5.channel.k8s.io` only: a message on this channel carries one byte, the channel its
/// sender will not write any more.
pub const CLOSE: u8 = 255;
