//! Test-only code, in one place: the in-memory doubles of the engine's two edges
//! ([`doubles`]), the delivery protocol's named scenarios against them ([`scenarios`], and across a checkpoint's
//! whole life, [`lifecycle`]), hostile
//! and broken API replies ([`hostile`]), and the model-based test of the protocol ([`model`], judged by [`oracle`]).

pub mod doubles;
mod hostile;
mod lifecycle;
mod model;
mod oracle;
pub mod scenarios;
