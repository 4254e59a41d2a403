//! The command line: `run`, `serve`, `check`, `verify`, `status`, `precompile`, `demo`, parsed and
//! dispatched (the commands' bodies are in [`crate::commands`], `serve` and [`crate::pass`]).
//! `main` returns an exit code and prints the error chain: 0 success, 1 the run failed, 2 a
//! configuration error.

use crate::pass::Collector;
use crate::runtime::{Runtime, default_cache_dir};
use crate::settings::{CollectArgs, ConfigError};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use mulesoft_audit::settings::names;
use mulesoft_audit::variables;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mulesoft-audit",
    version,
    about = "Collects MuleSoft Anypoint audit logs into Google Cloud Storage for Google SecOps, exactly once"
)]
struct Cli {
    #[arg(
        long,
        env = names::LOG_FORMAT,
        help = variables::help_of(names::LOG_FORMAT),
        value_enum,
        default_value = variables::default_of(names::LOG_FORMAT),
        global = true
    )]
    log_format: LogFormat,
    #[arg(long, env = names::CACHE_DIR, help = variables::help_of(names::CACHE_DIR), global = true)]
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
    crate::logging::init(matches!(cli.log_format, LogFormat::Json));
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

use crate::commands::print_report;

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
            Ok(print_report(&crate::stop::pass_until_stopped(collector, &rt)?))
        }
        Command::Check(args) => {
            let collector = Collector::open(&args, cache_dir.as_deref(), rt.handle().clone())?;
            rt.block_on(async move { tokio::task::spawn_blocking(move || crate::commands::check(&collector)).await })?
        }
        Command::Status(args) => {
            let max_lag = args
                .max_lag
                .as_deref()
                .map(|text| crate::settings::parse_duration("--max-lag", text))
                .transpose()?
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            crate::commands::status(&args.collect, args.json, max_lag, &rt)
        }
        Command::Verify(args) => {
            let request = args.request()?;
            let collector = Collector::open(&args.collect, cache_dir.as_deref(), rt.handle().clone())?;
            rt.block_on(async move {
                tokio::task::spawn_blocking(move || crate::commands::verify(&collector, request)).await
            })?
        }
        Command::Serve(args) => rt.block_on(crate::serve::serve(args, cache_dir)).map(|()| 0),
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::commands::demo(&args.out, args.entries, cache_dir.as_deref(), &rt),
        Command::Precompile => {
            let dir =
                cache_dir.ok_or_else(|| ConfigError("no cache directory: set MULESOFT_AUDIT_CACHE_DIR".into()))?;
            Runtime::new(Some(&dir))?;
            println!("compiled into {}", dir.display());
            Ok(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use mulesoft_audit::variables::{SETTINGS, Scope};

    /// Every argument of the binary and of each of its commands.
    fn arguments() -> Vec<clap::Arg> {
        let cli = Cli::command();
        let mut args: Vec<clap::Arg> = cli.get_arguments().cloned().collect();
        args.extend(cli.get_subcommands().flat_map(|c| c.get_arguments().cloned().collect::<Vec<_>>()));
        args
    }

    #[test]
    fn every_flag_of_the_binary_is_a_row_of_the_table_and_every_row_of_the_binary_a_flag() {
        let args = arguments();
        for arg in args.iter().filter(|a| a.get_env().is_some()) {
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            let row =
                variables::setting_named(&env).unwrap_or_else(|| panic!("--{:?} reads {env}, no row", arg.get_long()));
            assert_eq!(arg.get_long(), Some(row.flag), "{env}");
            let default: Vec<String> =
                arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
            assert_eq!(default, row.default.map(str::to_string).into_iter().collect::<Vec<_>>(), "{env}'s default");
            assert_eq!(arg.get_help().map(ToString::to_string).unwrap_or_default(), row.help, "{env}'s help");
        }
        let readers = [Scope::Pass, Scope::Store, Scope::Binary];
        for row in SETTINGS.iter().filter(|s| !s.flag.is_empty() && readers.contains(&s.scope)) {
            assert!(
                args.iter().any(|a| a.get_long() == Some(row.flag) && a.get_env().is_some_and(|e| e == row.name)),
                "{} has no flag --{}",
                row.name,
                row.flag
            );
        }
    }
}
