//! The one-shot commands besides `run` and `serve`: `check`, `verify`, `status` and `demo`, each
//! over a [`Collector`] or a destination the command line resolved ([`crate::cli`] parses and
//! dispatches only).

use crate::pass::Collector;
use crate::settings::{CollectArgs, ConfigError};
use crate::store;
use mulesoft_audit::collect::PassResult;
use mulesoft_audit::report::Report;

/// The summary on stdout (the engine's error lines went to the log as the pass ended).
pub fn print_report(report: &Report) -> u8 {
    println!("{}", report.json());
    report.exit_code
}

pub fn check(collector: &Collector) -> anyhow::Result<u8> {
    let s = &collector.settings;
    match collector.runtime.check(&s.limits, s.origin.clone(), &s.config)? {
        Ok(lines) => lines.iter().for_each(|l| println!("ok: {l}")),
        Err(error) => {
            let report = Report::from(PassResult::from(error));
            report.error_lines().for_each(|line| eprintln!("{line}"));
            return Ok(report.exit_code);
        }
    }
    if let Some(credentials) = collector.store.credentials() {
        println!("ok: credentials: {credentials}");
    }
    // Write access: a probe object outside the log prefix, replaced once the way a checkpoint is
    // (on GCS replacing needs `storage.objects.delete` as well as create), read back, removed.
    let probe = mulesoft_audit::window::probe_key(
        &s.config.state_prefix,
        std::process::id(),
        chrono::Utc::now().timestamp_millis(),
    );
    let store = &collector.store;
    let proof = (|| {
        let first = store.create(&probe, b"mulesoft-audit check", "text/plain", None)?;
        store.write_if_generation(&probe, b"mulesoft-audit check, replaced", "text/plain", first)?;
        let back = store.read(&probe)?;
        store.delete(&probe)?;
        Ok::<_, store::StoreError>(back.is_some_and(|o| o.data == b"mulesoft-audit check, replaced"))
    })();
    // With checkpoints elsewhere, the log destination needs only to take new objects: a probe
    // outside the log prefix, removed where the bucket allows it (a retention policy does not).
    if s.destination.state_dest.is_some() {
        let log_probe = format!("check-probe-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
        match store.create(&log_probe, b"mulesoft-audit check", "text/plain", None) {
            Ok(_) => {
                let removed = store.delete(&log_probe).is_ok();
                println!(
                    "ok: log destination takes new objects (probe `{log_probe}` {})",
                    if removed {
                        "created and removed"
                    } else {
                        "created; left behind, as the bucket does not allow deleting"
                    }
                );
            }
            Err(e) => {
                eprintln!("error: log destination: {e}");
                return Ok(2);
            }
        }
    }
    match proof {
        Ok(true) => {
            println!(
                "ok: destination {} is writable (probe `{probe}` created, replaced, read and removed)",
                store.describe()
            );
            // The removed probe, looked up as recovery looks up a pending object the feed took.
            match store.presence(&probe, Some(chrono::Utc::now().timestamp_millis() - 60_000)) {
                Ok(store::Presence::Deleted) => println!(
                    "ok: a deleted object is told from one never created (soft delete): safe with the feed's source deletion"
                ),
                Ok(store::Presence::Unknown) => println!(
                    "warning: destination {} cannot tell a deleted object from one never created (soft delete is off, or storage.buckets.get is not granted); with the SecOps feed's source deletion on, a pass stopped between creating an object and recording it may deliver that object's entries twice: turn soft delete on (gcloud storage buckets update gs://BUCKET --soft-delete-duration=7d) or leave source deletion off",
                    store.describe()
                ),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: destination {}: looking up a removed object: {e}", store.describe());
                    return Ok(2);
                }
            }
            Ok(0)
        }
        Ok(false) => {
            eprintln!("error: destination {}: the probe object did not read back as written", store.describe());
            Ok(1)
        }
        Err(e) => {
            eprintln!("error: destination {}: {e}", store.describe());
            Ok(2)
        }
    }
}

/// A store failure of `status` or `verify`: a refusal is a setting to fix (exit 2).
fn store_failure(store: &dyn store::Store, what: &str, e: store::StoreError) -> anyhow::Error {
    match e {
        store::StoreError::Denied(m) => {
            anyhow::Error::from(ConfigError(format!("{what} in {}: {m}", store.describe())))
        }
        e => anyhow::anyhow!("{what} in {}: {e}", store.describe()),
    }
}

/// `verify`: the component's verdict over the objects the host lists.
pub fn verify(collector: &Collector, request: mulesoft_audit::verify::Request) -> anyhow::Result<u8> {
    use mulesoft_audit::checkpoint::Checkpoint;
    use mulesoft_audit::verify::{ListedCheckpoint, Listing};
    let s = &collector.settings;
    let store = &collector.store;
    let failed = |what: &str, e| store_failure(store.as_ref(), what, e);
    // The checkpoints first, then the objects: see `Listing`.
    let prefix = &s.destination.state_prefix;
    let mut checkpoints = Vec::new();
    for key in store.list(prefix).map_err(|e| failed("listing checkpoints", e))? {
        let Some(org) = mulesoft_audit::window::checkpoint_org(prefix, &key) else {
            continue;
        };
        if let Some(object) = store.read(&key).map_err(|e| failed("reading a checkpoint", e))? {
            let c = Checkpoint::decode(&object.data, org, &key).map_err(|e| anyhow::anyhow!("{}", e.0))?;
            checkpoints.push(ListedCheckpoint {
                org_id: c.org_id,
                read_from_ms: c.read_from_ms,
                next_seq: c.next_seq,
                lineage: c.lineage,
            });
        }
    }
    let objects = store.list(&s.destination.key_prefix).map_err(|e| failed("listing log objects", e))?;
    // What was deleted only adds to the report: a store that cannot list it costs that, not
    // the verification.
    let deleted = store.list_deleted(&s.destination.key_prefix).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "deleted log objects cannot be listed; verify counts none of them");
        None
    });
    tracing::info!(
        objects = objects.len(),
        deleted = deleted.as_ref().map(Vec::len),
        repair = request.repair,
        "verifying"
    );
    let listing = Listing { checkpoints, objects, deleted };
    let report =
        collector.runtime.verify(&s.limits, s.origin.clone(), collector.store.clone(), &s.config, request, listing);
    let (json, lines, code) = match report {
        Ok(report) => (report.json, report.lines, report.exit_code),
        Err(trap) => {
            let report = Report::stopped(trap.kind(), crate::pass::scrub(&format!("{trap}"), &s.secret));
            (report.json(), report.error_lines().collect(), report.exit_code)
        }
    };
    lines.iter().for_each(|line| eprintln!("{line}"));
    println!("{json}");
    Ok(code)
}

/// `status`: the engine's rows, from each organization's checkpoint and status object.
/// `status`: every organization's row from the state alone; `max_lag` (seconds) makes an
/// organization further behind, or never collected, exit 1.
pub fn status(
    collect: &CollectArgs,
    json: bool,
    max_lag: Option<i64>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<u8> {
    use mulesoft_audit::checkpoint::Checkpoint;
    use mulesoft_audit::status::{self, OrgStatus};
    let destination = collect.destination()?;
    let store = store::open_destination(&destination, rt.handle().clone())?;
    let prefix = &destination.state_prefix;
    let stored = |e| store_failure(store.as_ref(), "reading the state", e);
    // Every organization with state, and the configured ones, which may have none yet.
    let mut orgs = crate::pass::orgs_with_state(store.as_ref(), prefix).map_err(stored)?;
    let configured = collect.engine.0.get(mulesoft_audit::variables::ORG_ID).unwrap_or_default();
    let configured = configured.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string);
    mulesoft_audit::status::add_spellings(&mut orgs, configured);
    let now = chrono::Utc::now().timestamp_millis();
    let mut rows = Vec::new();
    for org in &orgs {
        let key = mulesoft_audit::window::checkpoint_key(prefix, org);
        let checkpoint = match store.read(&key).map_err(stored)? {
            Some(object) => Some(Checkpoint::decode(&object.data, org, &key).map_err(|e| anyhow::anyhow!("{}", e.0))?),
            None => None,
        };
        let status = store.read(&status::status_key(prefix, org)).map_err(stored)?;
        rows.push(status::row(
            org,
            checkpoint.map(|c| (c.cursor_ms, c.pending.is_some())),
            status.and_then(|s| OrgStatus::decode(&s.data)).as_ref(),
            now,
        ));
    }
    if json {
        println!("{}", status::json(&rows));
    } else {
        print!("{}", status::table(&rows));
    }
    let code = status::exit_code(&rows, max_lag);
    if code != 0 {
        eprintln!("error: an organization is further behind than --max-lag, or was never collected");
    }
    Ok(code)
}

#[cfg(feature = "demo")]
/// `demo`: `entries` entries from the built-in simulator, collected into `out`.
pub fn demo(
    out: &std::path::Path,
    entries: usize,
    cache_dir: Option<&std::path::Path>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<u8> {
    use crate::settings::EngineArgs;
    use anyhow::Context as _;
    use mulesoft_audit::variables::{self, Values};
    let sim = anypoint_sim::Simulator::spawn(anypoint_sim::SimConfig::demo(entries))
        .context("starting the built-in Anypoint simulator")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(out)?;
    let mut values = Values::default();
    for (name, value) in [
        (variables::ORG_ID, sim.org_ids().join(",")),
        (variables::BASE_URL, sim.url()),
        (variables::CLIENT_ID, anypoint_sim::DEMO_CLIENT_ID.into()),
        (variables::CLIENT_SECRET, anypoint_sim::DEMO_CLIENT_SECRET.into()),
        // The simulator's entries settle at once, and it takes more than a real plane's budget.
        (variables::LAG, "1s".into()),
        (variables::RPM, "6000".into()),
    ] {
        values.set(name, value, name);
    }
    let collect = CollectArgs {
        engine: EngineArgs(values),
        dest: Some(format!("file://{}", out.display())),
        bucket: None,
        state_dest: None,
        gcs_endpoint: None,
        memory_mib: 256,
        max_run_time: "10m".into(),
    };
    eprintln!("demo: simulator on {} with {} entries; collecting into {}", sim.url(), entries, out.display());
    let mut collector = Collector::open(&collect, cache_dir, rt.handle().clone())?;
    collector.progress = true;
    let report = rt.block_on(async move { tokio::task::spawn_blocking(move || collector.pass()).await })?;
    let code = print_report(&report);
    eprintln!("demo: objects under {}/logs/, checkpoints under {}/state/", out.display(), out.display());
    Ok(code)
}
