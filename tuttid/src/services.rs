//! The built-in services every daemon serves to its trusted peers: the `busvc` crate, shared
//! with Tutti's soft bus server (`caps.list`, `echo.echo`, `compute.sha256`,
//! `compute.transform`; `display.*` and `storage.*` are served by a `tutti serve` client when
//! one is connected, see `crate::daemon`).

pub use busvc::{capabilities, display_capability, display_text, hex, serve, METHODS};
