//! The export: WIT calls in, the engine's [`Gcs`] store out.

// The generated bindings and the export macro are the only unsafe code; none is written by hand.
#![allow(unsafe_code)]

use mulesoft_audit::gcs::{Gcs, Target};
use mulesoft_audit::platform::StoreError;
use mulesoft_audit::variables::Values;
use mulesoft_audit::wasi_platform::WasiPlatform;
use std::cell::RefCell;

mod bindings {
    wit_bindgen::generate!({
        world: "object-store-component",
        path: "../../wit",
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

use bindings::exports::mulesoft::audit::object_store as wit;

mulesoft_audit::wit_conversions!(store = bindings::exports::mulesoft::audit::object_store);

thread_local! {
    /// The store of this instance, opened on the first call: its settings, or why they are wrong.
    static STORE: RefCell<Option<Result<Gcs<WasiPlatform>, String>>> = const { RefCell::new(None) };
}

/// Runs `call` on the store; settings that are wrong refuse every call, saying what to fix (the
/// collector reports it as `denied`: nothing changes until the configuration does).
fn with_store<T>(call: impl FnOnce(&mut Gcs<WasiPlatform>) -> Result<T, StoreError>) -> Result<T, wit::StoreError> {
    STORE.with_borrow_mut(|slot| {
        let opened = slot.get_or_insert_with(|| {
            let values = Values::from_env(mulesoft_audit::wasi_platform::variables()?);
            Target::from_env(&values).map(|target| Gcs::new(WasiPlatform::with_timeout_ms(target.timeout_ms), target))
        });
        match opened {
            Ok(store) => call(store).map_err(Into::into),
            Err(problem) => Err(wit::StoreError::Denied(problem.clone())),
        }
    })
}

struct Component;

impl wit::Guest for Component {
    fn create(
        key: String,
        data: Vec<u8>,
        content_type: String,
        deadline_ms: Option<i64>,
    ) -> Result<u64, wit::StoreError> {
        with_store(|s| s.create(&key, &data, &content_type, deadline_ms))
    }

    fn lease_ms() -> u64 {
        with_store(|s| Ok::<_, StoreError>(s.lease_ms())).unwrap_or(0)
    }

    fn read(key: String) -> Result<Option<wit::StoredObject>, wit::StoreError> {
        with_store(|s| s.read(&key)).map(|o| o.map(Into::into))
    }

    fn write_if_generation(
        key: String,
        data: Vec<u8>,
        content_type: String,
        generation: u64,
    ) -> Result<u64, wit::StoreError> {
        with_store(|s| s.write_if_generation(&key, &data, &content_type, generation))
    }

    fn presence(key: String, since_ms: Option<i64>) -> Result<wit::ObjectPresence, wit::StoreError> {
        with_store(|s| s.presence(&key, since_ms)).map(Into::into)
    }

    fn find(prefix: String, name: String, limit: u32) -> Result<wit::Found, wit::StoreError> {
        with_store(|s| s.find(&prefix, &name, limit)).map(Into::into)
    }
}

bindings::export!(Component with_types_in bindings);
