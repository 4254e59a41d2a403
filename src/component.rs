//! The component's export: WIT types in, WIT types out; everything else is in the plain modules.

// The generated bindings and the export macro are the only unsafe code; none is written by hand.
#![allow(unsafe_code)]

use crate::collect::{self, PassResult};
use crate::platform::{Found, ObjectStore, Presence, StoreError, Stored};
use crate::report::Report;
use crate::settings::{ErrorKind, Failure, Settings};
use crate::variables::{self, Values};
use crate::wasi_platform::WasiPlatform;

mod bindings {
    wit_bindgen::generate!({
        world: "collector-component",
        path: "wit",
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::mulesoft::audit::collector as wit;
use bindings::mulesoft::audit::object_store as wit_store;

/// The object store the host gives us.
struct HostStore;

impl ObjectStore for HostStore {
    fn create(&self, key: &str, data: &[u8], content_type: &str, deadline_ms: Option<i64>) -> Result<u64, StoreError> {
        wit_store::create(key, data, content_type, deadline_ms).map_err(StoreError::from)
    }
    fn lease_ms(&self) -> u64 {
        wit_store::lease_ms()
    }
    fn read(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        wit_store::read(key).map(|o| o.map(Stored::from)).map_err(StoreError::from)
    }
    fn write_if_generation(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        generation: u64,
    ) -> Result<u64, StoreError> {
        wit_store::write_if_generation(key, data, content_type, generation).map_err(StoreError::from)
    }
    fn presence(&self, key: &str, since_ms: Option<i64>) -> Result<Presence, StoreError> {
        wit_store::presence(key, since_ms).map(Presence::from).map_err(StoreError::from)
    }
    fn find(&self, prefix: &str, name: &str, limit: u32) -> Result<Found, StoreError> {
        wit_store::find(prefix, name, limit).map(Found::from).map_err(StoreError::from)
    }
}

crate::wit_conversions!(
    collector = bindings::exports::mulesoft::audit::collector,
    store = bindings::mulesoft::audit::object_store
);

struct Component;

impl wit::Guest for Component {
    fn run(config: wit::Config) -> Result<wit::RunSummary, wit::RunError> {
        let settings = Self::settings(config)?;
        let result = collect::run_pass(&mut WasiPlatform::new(&settings), &HostStore, &settings);
        let completed: Vec<_> = result.completed.into_iter().map(wit::OrgSummary::from).collect();
        if result.failures.is_empty() {
            Ok(wit::RunSummary { orgs: completed })
        } else {
            Err(wit::RunError { failures: result.failures.into_iter().map(wit::Failure::from).collect(), completed })
        }
    }

    fn check(config: wit::Config) -> Result<Vec<String>, wit::RunError> {
        let settings = Self::settings(config)?;
        collect::check(&mut WasiPlatform::new(&settings), &settings)
            .map_err(|f| wit::RunError { failures: vec![f.into()], completed: Vec::new() })
    }

    fn configure(
        vars: Vec<(String, String)>,
        secret_file: Option<Result<String, String>>,
    ) -> Result<wit::Environment, wit::Failure> {
        let read = |_: &str| secret_file.unwrap_or_else(|| Err("the host read no file".into()));
        let configured = variables::configure(&Values::from_env(vars), read)
            .map_err(|message| wit::Failure::from(Failure::new(ErrorKind::Config, message)))?;
        Ok(wit::Environment { config: configured.raw.into() })
    }

    fn verify(
        config: wit::Config,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
        repair: bool,
        listing: wit::Listing,
    ) -> wit::Report {
        let settings = match Settings::from_raw(config.into()) {
            Ok(settings) => settings,
            Err(message) => {
                let failures = vec![Failure::new(ErrorKind::Config, message)];
                return crate::verify::VerifyReport { failures, ..Default::default() }.into();
            }
        };
        let request = crate::verify::Request { since_ms, until_ms, repair };
        crate::verify::verify(&mut WasiPlatform::new(&settings), &HostStore, &settings, request, &listing.into()).into()
    }

    fn report_of(outcome: Result<wit::RunSummary, wit::RunError>) -> wit::Report {
        Report::from(outcome.map_or_else(PassResult::from, PassResult::from)).into()
    }
}

impl Component {
    fn settings(config: wit::Config) -> Result<Settings, wit::RunError> {
        Settings::from_raw(config.into()).map_err(|message| wit::RunError {
            failures: vec![Failure::new(ErrorKind::Config, message).into()],
            completed: Vec::new(),
        })
    }
}

bindings::export!(Component with_types_in bindings);
