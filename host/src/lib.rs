//! The `mulesoft-audit` host: runs the collector component (embedded) in a wasmtime sandbox,
//! gives it an object store (GCS, a directory, memory), and triggers it from the command line,
//! Pub/Sub push, CloudEvents or a schedule.

pub mod cli;
pub mod pass;
pub mod runtime;
pub mod sandbox;
pub mod serve;
pub mod settings;
pub mod store;
