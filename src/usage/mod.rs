//! Usage events — what an AI/API call or user activity consumed — their
//! prices, and the batching [`UsageRecorder`] for workers.

mod event;
mod price;
pub mod recorder;
mod spool;

pub use event::{MAX_LABEL_CHARS, MAX_METADATA_BYTES, UsageEvent, UsageRecord};
pub use price::{ModelPrice, PriceTable};
pub use recorder::{
    Backpressure, RecorderConfig, RecorderStats, ShutdownReport, UnknownModelPolicy, UsageRecorder,
};
pub use spool::SpoolSync;
