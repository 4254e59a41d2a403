//! The integration tests: one binary. Each runs the real `mulesoft-audit` binary (or its library)
//! with the real component against the Anypoint simulator, writing to a directory or to
//! fake-gcs-server, and checks what arrived against what the simulator holds.
//!
//! Modules:
//! - `harness`: the simulator, the binary, fake-gcs-server, and the exactly-once assertion.
//! - `collect`: end-to-end collection into `file://` and GCS, keys, content, paging modes, orgs.
//! - `faults`: throttling, 5xx, dropped, truncated and hung replies, token expiry, kills, concurrency.
//! - `command`: the WASI command artifact under a real `wasmtime run`.
//! - `node`: the component in Node.js through jco, the object store in JavaScript.
//! - `config`: bad settings and bad credentials: one clear line, the right exit code.
//! - `sandbox`: outbound HTTP allowlist, memory and secrets.
//! - `simulator`: the Anypoint simulator against what is known of the real API.
//! - `google`: a stand-in for Google (metadata server, token endpoints, Cloud Storage that refuses
//!   anonymous callers), in front of fake-gcs-server.
//! - `credentials`: each Application Default Credentials source, end to end; missing and broken
//!   credentials; the smoke matrix of every subcommand.
//! - `storage`: GCS faults through a fault-injecting proxy, missing bucket, checkpoint conflicts.
//! - `serve`: the HTTP trigger (Pub/Sub push, CloudEvents, bad bodies, concurrent triggers) and its
//!   `/metrics` against what was delivered.
//! - `progress`: the live progress line a backfill draws at a terminal (a pseudo-terminal).
//! - `status`: the state's account of each organization, `--max-lag`, on a directory and a bucket.
//! - `verify`: missing and doubled entries counted against the API, `--repair`, its cost.
//! - `hostile`: replies too large or too slow, a token endpoint that echoes the secret.
//! - `lifecycle`: the checkpoint's whole life: state moved, lost or made anew, a page cap that
//!   always progresses, `verify` over what the feed ingests.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod collect;
mod command;
mod config;
mod credentials;
mod edge;
mod faults;
mod google;
mod harness;
mod hostile;
mod lifecycle;
mod node;
mod progress;
mod sandbox;
mod serve;
mod simulator;
mod status;
mod storage;
mod verify;
