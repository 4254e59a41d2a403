//! A local stand-in for the MuleSoft Anypoint control plane, faithful to what is known of it
//! (`shared/reference/anypoint-audit-api.md`): the client-credentials token endpoint (which, like
//! the real one, writes an audit entry per token), the audit query with offset and cursor paging,
//! inclusive bounds, epoch-ms and ISO 8601 dates, limit 1..200, oldest first by default, per-org
//! data, 403 for orgs the client may not read, the hierarchy and retention endpoints, and a
//! per-minute rate limit answering 503 until the minute ends.
//!
//! Faults are injected by configuration and are deterministic from the seed. The data set is
//! inspectable, so tests compare what was delivered with what exists, not with what the code did.

mod config;
mod data;
mod faults;
mod handlers;
mod paging;
mod reply;
mod server;
mod state;

pub use config::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Faults, HUNG_REPLY, OrgSpec, SimConfig};
pub use data::{Entry, now_ms};
pub use server::Simulator;
pub use state::Stats;
