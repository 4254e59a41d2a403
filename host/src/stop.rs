//! A clean stop on SIGTERM (Cloud Run's and every container runtime's way to say "stop"; Cloud
//! Run kills 10 s later) and SIGINT: no new pass starts, a pass in flight has [`GRACE`] to finish,
//! and one that does not is recorded as stopped in `status` before the process exits. Every point
//! of a pass is a safe one to stop at (the delivery protocol holds across kills), so the pass is
//! not waited for past the grace: what it had not recorded, the next pass recovers.

use std::time::Duration;

/// How long a pass in flight may go on after the signal: within Cloud Run's 10 s, with time left
/// to record the stop and exit.
pub const GRACE: Duration = Duration::from_secs(7);

/// The report's kind for a pass stopped by a signal.
pub const KIND: &str = "stopped";

/// Resolves with the signal's name on the first SIGTERM or SIGINT.
pub async fn signalled() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be handled; only SIGINT stops cleanly");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// The message of a pass stopped by `signal`.
pub fn message(signal: &str) -> String {
    format!(
        "stopped by {signal} before it finished ({}s grace); nothing past the last recorded object is marked done, and the next pass goes on from there",
        GRACE.as_secs()
    )
}
