//! Settings: command-line flags and environment variables (flags win), parsed once into the WIT
//! `config` record plus the host's own settings. Logs name settings, never their values.

use crate::bindings::wit;
use crate::sandbox::{Limits, Origin, Timeouts};
use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args};
use mulesoft_audit::settings::names;
use mulesoft_audit::variables::{self, Shape, Values};
use std::time::Duration;

/// The engine's settings as flags: each one's flag, variable, help and default come from the
/// engine's table ([`variables::SETTINGS`]), and their values go to the engine's parser as text,
/// labelled with the flag or the variable they came from, so that its messages name what the
/// user typed.
#[derive(Clone, Debug, Default)]
pub struct EngineArgs(pub Values);

impl clap::FromArgMatches for EngineArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for setting in variables::SETTINGS.iter().filter(|s| s.scope == variables::Scope::Pass) {
            // A default stays the engine's to apply: only what the user gave is passed on.
            let label = match matches.value_source(setting.flag) {
                Some(ValueSource::CommandLine) => format!("--{}", setting.flag),
                Some(ValueSource::EnvVariable) => setting.name.to_string(),
                _ => continue,
            };
            if let Ok(Some(raw)) = matches.try_get_raw(setting.flag) {
                let text: Vec<_> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
                self.0.set(setting.name, text.join(","), label);
            }
        }
        Ok(())
    }
}

impl clap::Args for EngineArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(variables::SETTINGS.iter().filter(|s| s.scope == variables::Scope::Pass).map(|setting| {
            let arg = Arg::new(setting.flag).long(setting.flag).env(setting.name).help(setting.help);
            let arg = match setting.default {
                Some(default) => arg.default_value(default),
                None => arg,
            };
            match setting.shape {
                Shape::Value => arg,
                Shape::Secret => arg.hide_env_values(true),
                Shape::List => arg.action(ArgAction::Append),
                Shape::Switch => arg.action(ArgAction::SetTrue).value_parser(BoolishValueParser::new()),
                Shape::Platform | Shape::Variable => arg.hide(true),
            }
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// What to collect, from where, into where.
#[derive(Args, Clone)]
pub struct CollectArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    // Each flag's name, variable, help and default are its row's in the engine's table
    // (`variables::SETTINGS`); a test holds every row of the binary's to a flag here.
    #[arg(long, env = names::DEST, help = variables::help_of(names::DEST))]
    pub dest: Option<String>,
    #[arg(long, env = names::BUCKET, help = variables::help_of(names::BUCKET))]
    pub bucket: Option<String>,
    #[arg(long, env = names::STATE_DEST, help = variables::help_of(names::STATE_DEST))]
    pub state_dest: Option<String>,
    #[arg(long, env = names::GCS_ENDPOINT, help = variables::help_of(names::GCS_ENDPOINT))]
    pub gcs_endpoint: Option<String>,
    #[arg(
        long,
        env = names::MEMORY_MIB,
        help = variables::help_of(names::MEMORY_MIB),
        default_value = variables::default_of(names::MEMORY_MIB)
    )]
    pub memory_mib: usize,
    #[arg(
        long,
        env = names::MAX_RUN_TIME,
        help = variables::help_of(names::MAX_RUN_TIME),
        default_value = variables::default_of(names::MAX_RUN_TIME)
    )]
    pub max_run_time: String,
}

/// A configuration error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// A duration setting, through the engine's parser.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    mulesoft_audit::settings::parse_duration(setting, text).map_err(ConfigError)
}

/// Where log objects and checkpoints are: all that `status` needs, and part of what a pass does.
#[derive(Clone, Debug)]
pub struct Destination {
    pub dest: String,
    /// Where checkpoints go, when not beside the logs.
    pub state_dest: Option<String>,
    /// Where gs:// requests go, and whether they carry Google credentials.
    pub gcs: GcsEndpoint,
    pub key_prefix: String,
    pub state_prefix: String,
    /// Attempts per storage request (`MULESOFT_AUDIT_MAX_ATTEMPTS`, as for the API's).
    pub attempts: u32,
}

/// Everything one pass needs, validated.
#[derive(Clone)]
pub struct Resolved {
    pub config: wit::Config,
    pub origin: Origin,
    pub destination: Destination,
    pub limits: Limits,
    /// The secret, kept to scrub it from any text we print.
    pub secret: String,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("orgs", &self.config.org_ids)
            .field("origin", &self.origin)
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl CollectArgs {
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let values = &self.engine.0;
        let configured = variables::configure(values, variables::read_secret_file).map_err(ConfigError)?;
        // The sandbox lets the component reach this origin only (plain http only on loopback).
        let origin = Origin::from_base_url(&configured.settings.base.url(""))
            .map_err(|e| bad(format!("{}: {e}", values.label(variables::BASE_URL))))?;
        let destination = self.destination()?;
        let run_time = parse_duration("--max-run-time", &self.max_run_time)?;
        let limits = Limits {
            memory_bytes: self.memory_mib << 20,
            run_time,
            http: Timeouts {
                first_byte: std::time::Duration::from_millis(configured.raw.http_timeout_ms),
                ..Timeouts::default()
            },
        };
        let secret = configured.raw.client_secret.clone();
        Ok(Resolved { config: configured.raw.into(), origin, destination, limits, secret })
    }

    /// Where objects and checkpoints are, without the settings a pass needs besides (no API
    /// credentials): for `status`.
    pub fn destination(&self) -> Result<Destination, ConfigError> {
        let dest = variables::destination(self.dest.as_deref(), self.bucket.as_deref()).map_err(bad)?;
        let gcs = GcsEndpoint::resolve(
            self.gcs_endpoint.as_deref(),
            std::env::var(mulesoft_audit::settings::names::STORAGE_EMULATOR_HOST).ok().as_deref(),
        )?;
        let state_dest =
            self.state_dest.as_deref().map(str::trim).filter(|d| !d.is_empty() && *d != dest).map(str::to_string);
        let (key_prefix, state_prefix) = variables::prefixes(&self.engine.0);
        let attempts = self.engine.0.required::<u32>(variables::MAX_ATTEMPTS).map_err(bad)?.max(1);
        Ok(Destination { dest, state_dest, gcs, key_prefix, state_prefix, attempts })
    }
}

/// Cloud Storage's own endpoint.
pub use mulesoft_audit::gcs::DEFAULT_ENDPOINT as GCS_DEFAULT_ENDPOINT;

/// Where gs:// requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcsEndpoint {
    /// Cloud Storage, or another endpoint of it (`--gcs-endpoint`), with Google credentials.
    Google(String),
    /// An emulator named by `STORAGE_EMULATOR_HOST`: no credentials, as Google's own client
    /// libraries do.
    Emulator(String),
}

impl GcsEndpoint {
    /// From `--gcs-endpoint` and `STORAGE_EMULATOR_HOST` (empty counts as unset).
    pub fn resolve(endpoint: Option<&str>, emulator: Option<&str>) -> Result<Self, ConfigError> {
        let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
        let emulator = emulator.map(str::trim).filter(|e| !e.is_empty());
        match (endpoint, emulator) {
            (Some(_), Some(_)) => Err(bad(
                "both MULESOFT_AUDIT_GCS_ENDPOINT and STORAGE_EMULATOR_HOST are set: set only one (STORAGE_EMULATOR_HOST sends no credentials)",
            )),
            (Some(url), None) => Ok(Self::Google(mulesoft_audit::gcs::endpoint(Some(url)).map_err(bad)?.url(""))),
            (None, Some(host)) => {
                let host = host.trim_end_matches('/');
                let url = if host.contains("://") { host.to_string() } else { format!("http://{host}") };
                mulesoft_audit::settings::BaseUrl::parse(&url)
                    .map_err(|e| bad(format!("{}: {e}", mulesoft_audit::settings::names::STORAGE_EMULATOR_HOST)))?;
                Ok(Self::Emulator(url))
            }
            (None, None) => Ok(Self::Google(GCS_DEFAULT_ENDPOINT.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        engine: EngineArgs,
    }

    #[test]
    fn flags_reach_the_engine_as_given() {
        let flags = ["test", "--org", "org-a", "--org", "org-b,org-c", "--lag", "soon", "--discover-children"];
        let values = Flags::try_parse_from(flags).unwrap().engine.0;
        assert_eq!(values.get(variables::ORG_ID), Some("org-a,org-b,org-c"));
        assert_eq!(values.get(variables::DISCOVER_CHILDREN), Some("true"));
        assert_eq!(values.get(variables::OVERLAP), None, "a default is the engine's to apply");
        let message = variables::configure(&values, |_| Err("no file".into())).err().unwrap_or_default();
        assert!(message.starts_with("--lag `soon` is not a duration"), "{message}");
    }

    #[test]
    fn gcs_endpoints() {
        let google = |url: &str| GcsEndpoint::Google(url.to_string());
        assert_eq!(GcsEndpoint::resolve(None, None).unwrap(), google(GCS_DEFAULT_ENDPOINT));
        assert_eq!(GcsEndpoint::resolve(Some(""), Some(" ")).unwrap(), google(GCS_DEFAULT_ENDPOINT));
        assert_eq!(
            GcsEndpoint::resolve(Some("https://storage-x.p.googleapis.com/"), None).unwrap(),
            google("https://storage-x.p.googleapis.com")
        );
        assert_eq!(GcsEndpoint::resolve(Some("http://127.0.0.1:9"), None).unwrap(), google("http://127.0.0.1:9"));
        let plain = GcsEndpoint::resolve(Some("http://storage.example"), None).unwrap_err().0;
        assert!(plain.contains("MULESOFT_AUDIT_GCS_ENDPOINT") && plain.contains("https://"), "{plain}");
        assert_eq!(
            GcsEndpoint::resolve(None, Some("localhost:4443")).unwrap(),
            GcsEndpoint::Emulator("http://localhost:4443".into())
        );
        assert!(
            GcsEndpoint::resolve(Some("https://a.example"), Some("localhost:1")).unwrap_err().0.contains("only one")
        );
    }
}
