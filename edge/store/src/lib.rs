//! The object store as a component (the WIT world `object-store-component`): Cloud Storage's
//! JSON API through the engine's [`mulesoft_audit::gcs::Gcs`] over outgoing `wasi:http`, so that
//! the collector runs where a runtime offers `wasi:http` and little else. Its settings come from
//! the environment, by the names the host reads ([`mulesoft_audit::settings::names`]).
//!
//! Natively this crate is empty; everything it does is the engine's, tested there.

#[cfg(target_arch = "wasm32")]
mod component;
