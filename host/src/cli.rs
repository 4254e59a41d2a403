//! The command line: `run`, `serve`, `check`, `verify`, `status`, `precompile`, `demo`. `main` returns an exit code and prints the
//! error chain: 0 success, 1 the run failed, 2 a configuration error.

use crate::pass::Collector;
use crate::runtime::{Runtime, default_cache_dir};
use crate::settings::{CollectArgs, ConfigError};
use crate::store;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use mulesoft_audit::collect::PassResult;
use mulesoft_audit::report::Report;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mulesoft-audit",
    version,
    about = "Collects MuleSoft Anypoint audit logs into Google Cloud Storage for Google SecOps, exactly once"
)]
struct Cli {
    /// Log format on stderr: text, or json (Cloud Logging's shape).
    #[arg(long, env = mulesoft_audit::settings::names::LOG_FORMAT, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Directory for compiled-code cache (default: ~/.cache/mulesoft-audit).
    #[arg(long, env = mulesoft_audit::settings::names::CACHE_DIR, global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// One pass for every configured org; prints the summary as JSON on stdout.
    Run(CollectArgs),
    /// HTTP trigger for Cloud Run: POST / (Pub/Sub push or CloudEvent) runs a pass.
    Serve(crate::serve::ServeArgs),
    /// Validates settings, credentials, retention access and write access; changes nothing.
    Check(CollectArgs),
    /// Proves delivery: per organization, the API's entries in a window against the delivered
    /// objects (missing, duplicated); `--repair` delivers what is missing, exactly once.
    Verify(VerifyArgs),
    /// Per organization, from the state alone (no API call, no Anypoint credentials): how far
    /// delivery got, how far behind now, the last success and the last failure.
    Status(StatusArgs),
    /// Runs against the built-in Anypoint simulator into a local folder: nothing to set up.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Compiles the embedded component into the cache directory (for container images).
    Precompile,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The settings of the passes that delivered (`--since` given on the command line is the
    /// start of the window verified; the variable, a backfill setting, is not).
    #[command(flatten)]
    collect: CollectArgs,
    /// The end of the window (default: up to what the collector will not read again).
    #[arg(long)]
    until: Option<String>,
    /// Deliver the missing entries in new objects, then verify again.
    #[arg(long)]
    repair: bool,
}

#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Exit 1 when an organization is further behind now than this (e.g. 2h), or was never
    /// collected: for a cron or uptime check.
    #[arg(long)]
    max_lag: Option<String>,
}

#[cfg(feature = "demo")]
#[derive(clap::Args)]
struct DemoArgs {
    /// Where the objects go.
    #[arg(long, default_value = "mulesoft-audit-demo")]
    out: PathBuf,
    /// Entries the simulator holds for the last 24 hours.
    #[arg(long, default_value_t = 5000)]
    entries: usize,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(mulesoft_audit::settings::names::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into a log file or collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        // Cloud Logging reads `severity` and `message` from JSON lines.
        LogFormat::Json => builder.event_format(crate::logging::CloudLogging).init(),
    }
}

/// Every variable the command line reads (clap's `env` of each argument), for naming one whose
/// value is not UTF-8.
pub fn reads_variable(name: &str) -> bool {
    use clap::CommandFactory as _;
    let cli = Cli::command();
    let reads = |command: &clap::Command| command.get_arguments().any(|a| a.get_env().is_some_and(|e| e == name));
    mulesoft_audit::variables::is_setting(name) || reads(&cli) || cli.get_subcommands().any(reads)
}

pub fn main() -> ExitCode {
    // clap's own refusal ("invalid UTF-8 was detected in one or more arguments") names none.
    if let Err(message) = mulesoft_audit::variables::utf8_environment(std::env::vars_os(), reads_variable) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.log_format);
    let cache_dir = cli.cache_dir.clone().or_else(default_cache_dir);
    match dispatch(cli.command, cache_dir) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.downcast_ref::<ConfigError>().is_some() { 2 } else { 1 };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// The summary on stdout (the engine's error lines went to the log as the pass ended).
fn print_report(report: &Report) -> u8 {
    println!("{}", report.json());
    report.exit_code
}

fn dispatch(command: Command, cache_dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let rt = runtime()?;
    // `run` and `serve` stop a pass cleanly (crate::stop); the others end at once.
    if !matches!(command, Command::Run(_) | Command::Serve(_)) {
        crate::stop::end_on_signal(&rt);
    }
    match command {
        Command::Run(args) => {
            let mut collector = Collector::open(&args, cache_dir.as_deref(), rt.handle().clone())?;
            collector.progress = true;
            let collector = std::sync::Arc::new(collector);
            let running = collector.clone();
            let report = rt.block_on(async move {
                let mut pass = tokio::task::spawn_blocking(move || running.pass());
                tokio::select! {
                    report = &mut pass => report,
                    signal = crate::stop::signalled() => {
                        tracing::warn!(signal, grace_s = crate::stop::GRACE.as_secs(), "stopping: the pass in flight may finish within the grace");
                        crate::stop::on_second_signal();
                        match tokio::time::timeout(crate::stop::GRACE, &mut pass).await {
                            Ok(report) => report,
                            Err(_) => match crate::stop::record(collector, signal).await {
                                Some(report) => crate::stop::exit_with(&report),
                                // It finished meanwhile: its own report.
                                None => pass.await,
                            },
                        }
                    }
                }
            })?;
            Ok(print_report(&report))
        }
        Command::Check(args) => {
            let collector = Collector::open(&args, cache_dir.as_deref(), rt.handle().clone())?;
            rt.block_on(async move { tokio::task::spawn_blocking(move || check(&collector)).await })?
        }
        Command::Status(args) => status(&args, &rt),
        Command::Verify(args) => {
            let request = args.request()?;
            let collector = Collector::open(&args.collect, cache_dir.as_deref(), rt.handle().clone())?;
            rt.block_on(async move { tokio::task::spawn_blocking(move || verify(&collector, request)).await })?
        }
        Command::Serve(args) => rt.block_on(crate::serve::serve(args, cache_dir)).map(|()| 0),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo(&args, cache_dir.as_deref(), &rt),
        Command::Precompile => {
            let dir =
                cache_dir.ok_or_else(|| ConfigError("no cache directory: set MULESOFT_AUDIT_CACHE_DIR".into()))?;
            Runtime::new(Some(&dir))?;
            println!("compiled into {}", dir.display());
            Ok(0)
        }
    }
}

fn check(collector: &Collector) -> anyhow::Result<u8> {
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
    let probe = format!(
        "{}check-probe-{}-{}",
        s.config.state_prefix,
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let store = &collector.store;
    let proof = (|| {
        let first = store.create(&probe, b"mulesoft-audit check", "text/plain")?;
        store.write_if_generation(&probe, b"mulesoft-audit check, replaced", "text/plain", first)?;
        let back = store.read(&probe)?;
        store.delete(&probe)?;
        Ok::<_, store::StoreError>(back.is_some_and(|o| o.data == b"mulesoft-audit check, replaced"))
    })();
    // With checkpoints elsewhere, the log destination needs only to take new objects: a probe
    // outside the log prefix, removed where the bucket allows it (a retention policy does not).
    if s.destination.state_dest.is_some() {
        let log_probe = format!("check-probe-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
        match store.create(&log_probe, b"mulesoft-audit check", "text/plain") {
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

impl VerifyArgs {
    /// What is asked: the window (`--since` from the command line only, `--until`), repair.
    fn request(&self) -> Result<mulesoft_audit::verify::Request, ConfigError> {
        use mulesoft_audit::settings::parse_since;
        use mulesoft_audit::variables::SINCE;
        let values = &self.collect.engine.0;
        let since = match values.get(SINCE) {
            Some(text) if values.label(SINCE) == "--since" => Some(parse_since("--since", text).map_err(ConfigError)?),
            _ => None,
        };
        let until = self.until.as_deref().map(|t| parse_since("--until", t)).transpose().map_err(ConfigError)?;
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(ConfigError("--since is after --until: nothing to verify".into()));
        }
        Ok(mulesoft_audit::verify::Request { since_ms: since, until_ms: until, repair: self.repair })
    }
}

/// A store failure of `status` or `verify`: a refusal is a setting to fix (exit 2).
fn store_failure(store: &dyn store::ObjectStore, what: &str, e: store::StoreError) -> anyhow::Error {
    match e {
        store::StoreError::Denied(m) => {
            anyhow::Error::from(ConfigError(format!("{what} in {}: {m}", store.describe())))
        }
        e => anyhow::anyhow!("{what} in {}: {e}", store.describe()),
    }
}

/// `verify`: the component's verdict over the objects the host lists.
fn verify(collector: &Collector, request: mulesoft_audit::verify::Request) -> anyhow::Result<u8> {
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
fn status(args: &StatusArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<u8> {
    use mulesoft_audit::checkpoint::Checkpoint;
    use mulesoft_audit::status::{self, OrgStatus};
    let destination = args.collect.destination()?;
    let max_lag = args
        .max_lag
        .as_deref()
        .map(|text| crate::settings::parse_duration("--max-lag", text))
        .transpose()?
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let store = store::open_destination(&destination, rt.handle().clone())?;
    let prefix = &destination.state_prefix;
    let stored = |e| store_failure(store.as_ref(), "reading the state", e);
    // Every organization with state, and the configured ones, which may have none yet.
    let mut orgs = crate::pass::orgs_with_state(store.as_ref(), prefix).map_err(stored)?;
    let configured = args.collect.engine.0.get(mulesoft_audit::variables::ORG_ID).unwrap_or_default();
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
    if args.json {
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
fn demo(args: &DemoArgs, cache_dir: Option<&std::path::Path>, rt: &tokio::runtime::Runtime) -> anyhow::Result<u8> {
    use crate::settings::EngineArgs;
    use mulesoft_audit::variables::{self, Values};
    let sim = anypoint_sim::Simulator::spawn(anypoint_sim::SimConfig::demo(args.entries))
        .context("starting the built-in Anypoint simulator")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
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
    eprintln!("demo: simulator on {} with {} entries; collecting into {}", sim.url(), args.entries, out.display());
    let mut collector = Collector::open(&collect, cache_dir, rt.handle().clone())?;
    collector.progress = true;
    let report = rt.block_on(async move { tokio::task::spawn_blocking(move || collector.pass()).await })?;
    let code = print_report(&report);
    eprintln!("demo: objects under {}/logs/, checkpoints under {}/state/", out.display(), out.display());
    Ok(code)
}
