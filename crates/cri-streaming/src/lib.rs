#![doc = include_str!("../README.md")]

mod client;
mod io;
pub mod protocol;
mod runtime;
mod server;
pub mod spdy;
mod token;
pub mod websocket;

pub use async_trait::async_trait;
pub use client::{
    ClientError, Forwarded, PortForward, Streams, Transport, run, run_with_protocols,
};
pub use runtime::{
    Duplex, DuplexStream, Reader, Session, StreamError, StreamingRuntime, TerminalSize, Writer,
};
pub use server::{Config, Server};
pub use token::{Pending, TokenError};
