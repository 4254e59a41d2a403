//! The WIT bindings, generated once, and every conversion between them and the engine's Rust
//! types, as `From` impls in one place (as wasmtime's `wasi-http` keeps its `conv.rs`): the
//! engine's [`mulesoft_audit::wit_conversions!`], which the component expands the same way.

mod generated {
    wasmtime::component::bindgen!({ world: "collector-core", path: "../wit" });
}

pub use generated::exports::mulesoft::audit::collector as wit;
pub use generated::mulesoft::audit::object_store as wit_store;
pub use generated::{CollectorCore, CollectorCorePre};
/// The WIT `object-presence`, used by the stores as it is.
pub use wit_store::ObjectPresence as Presence;

mulesoft_audit::wit_conversions!(
    collector = generated::exports::mulesoft::audit::collector,
    store = generated::mulesoft::audit::object_store
);
