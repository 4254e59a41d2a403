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

/// `run`'s one pass, stopped cleanly on a signal: the pass's report, or the stop's where it did
/// not finish within [`GRACE`] (then the process exits with it, see [`exit_with`]).
pub fn pass_until_stopped(
    collector: crate::pass::Collector,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<mulesoft_audit::report::Report> {
    let collector = std::sync::Arc::new(collector);
    let running = collector.clone();
    let report = rt.block_on(async move {
        let mut pass = tokio::task::spawn_blocking(move || running.pass());
        tokio::select! {
            report = &mut pass => report,
            signal = signalled() => {
                tracing::warn!(signal, grace_s = GRACE.as_secs(), "stopping: the pass in flight may finish within the grace");
                on_second_signal();
                match tokio::time::timeout(GRACE, &mut pass).await {
                    Ok(report) => report,
                    Err(_) => match record(collector, signal).await {
                        Some(report) => exit_with(&report),
                        // It finished meanwhile: its own report.
                        None => pass.await,
                    },
                }
            }
        }
    })?;
    Ok(report)
}

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

/// How long recording the stop may take: what the grace leaves of Cloud Run's 10 s, with a
/// second to spare. A store too slow for it leaves the status as it was (the next pass goes on all
/// the same).
pub const RECORDING: Duration = Duration::from_secs(2);

/// After the first signal: a second one ends the process at once (a person pressing Ctrl-C
/// twice), with the stop's report.
pub fn on_second_signal() {
    tokio::spawn(async {
        let signal = signalled().await;
        let report = mulesoft_audit::report::Report::stopped(
            KIND,
            format!("{}; a second signal ended it at once", message(signal)),
        );
        exit_with(&report);
    });
}

/// The pass in flight, stopped by `signal` ([`crate::pass::Collector::stopped_by`]): recorded as
/// stopped within [`RECORDING`], on a blocking thread as every store call is; its report. `None`
/// when no pass is in flight any more (it finished meanwhile).
pub async fn record(
    collector: std::sync::Arc<crate::pass::Collector>,
    signal: &'static str,
) -> Option<mulesoft_audit::report::Report> {
    let recording = tokio::task::spawn_blocking(move || collector.stopped_by(KIND, message(signal)));
    match tokio::time::timeout(RECORDING, recording).await {
        Ok(recorded) => recorded.ok().flatten(),
        Err(_) => {
            tracing::warn!("the stop could not be recorded in status in time");
            Some(mulesoft_audit::report::Report::stopped(KIND, message(signal)))
        }
    }
}

/// Prints `report` as every pass's report is, then ends the process at once, leaving the pass's
/// thread behind (every point of a pass is safe to stop at).
pub fn exit_with(report: &mulesoft_audit::report::Report) -> ! {
    let code = crate::commands::print_report(report);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code))
}

/// For a command without a pass to stop (`check`, `verify`, `status`, `precompile`, `demo`): a
/// signal ends it at once with 128 + its number, as a shell reports it (the binary is PID 1 in a
/// container, where a signal without a handler is ignored).
pub fn end_on_signal(runtime: &tokio::runtime::Runtime) {
    runtime.spawn(async {
        let signal = signalled().await;
        tracing::warn!(signal, "stopped");
        std::process::exit(if signal == "SIGINT" { 130 } else { 143 });
    });
}
