#![doc = include_str!("../README.md")]

mod error;
pub mod image;
pub mod log;
pub mod spec;

pub use error::{Error, Result};
