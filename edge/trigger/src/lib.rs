//! The HTTP trigger as a component (the WIT world `edge-trigger`): a POST with a Pub/Sub push or
//! CloudEvent body runs one pass of the collector it imports and answers as `serve` does (204,
//! or 500 so that Pub/Sub delivers the trigger again). Composed with the collector and the store
//! component it is the edge component that `wasmtime serve`, Spin or wasmCloud run.
//!
//! It owns no fact of its own: the trigger shapes and the answer are the engine's
//! ([`mulesoft_audit::trigger`]), the settings and the report the collector's exports
//! (`configure`, `report-of`). Natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod component;
