#![doc = include_str!("../README.md")]

mod error;
pub mod image;
pub mod log;
pub mod netns;
pub mod spec;

pub use error::{Error, Result};

/// Internal: entry points for the fuzz targets (`fuzz/`), no stability promise.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use image::fuzzing;
