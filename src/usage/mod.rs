//! Usage events: what an AI/API call or user activity consumed.

mod event;

pub use event::{MAX_LABEL_CHARS, MAX_METADATA_BYTES, UsageEvent, UsageRecord};
