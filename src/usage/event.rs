//! The usage event and its validated, store-ready form.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::limits::{CurrentPeriods, validate_amount};

/// Longest provider, model or operation label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// Largest metadata accepted, as serialized JSON: 8 KiB. Usage rows are
/// written for every call; bulky payloads belong elsewhere.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// One AI/API call or user activity to record.
///
/// The metrics it counts towards:
/// - `tokens`: input + cached input + output tokens (when any);
/// - `cost_usd`: its cost (when known);
/// - each named quantity (`ads_created: 1`, `images: 4`).
///
/// Input tokens exclude cached input tokens; pass each separately.
///
/// ```
/// use rust_decimal_macros::dec;
/// use tenancy::{OrgId, UsageEvent, MetricKey};
/// let org = OrgId::new_v7();
/// let call = UsageEvent::new(org)
///     .ai_call("openai", "gpt-4o", "ad_copy")
///     .tokens(1200, 300, 450)
///     .cost_usd(dec!(0.0123));
/// let ad = UsageEvent::new(org).quantity(MetricKey::ads_created(), dec!(1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// A client-generated id; assigned (UUIDv7) when recorded if `None`.
    /// Recording the same id twice counts once.
    pub id: Option<EventId>,
    /// The organization billed.
    pub org: OrgId,
    /// The user who caused it, if any.
    pub user: Option<UserId>,
    /// The provider (`openai`, `anthropic`, `google`).
    pub provider: String,
    /// The model (`gpt-4o`).
    pub model: String,
    /// What the call was for (`ad_copy`, `avatar_video`).
    pub operation: String,
    /// Input tokens, excluding cached ones.
    pub input_tokens: u64,
    /// Input tokens served from the provider's cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Other metrics and their amounts.
    pub quantities: BTreeMap<MetricKey, Decimal>,
    /// Cost in US dollars, when the caller knows it.
    pub cost_usd: Option<Decimal>,
    /// When it happened; the recording time if `None`. Usage counts into the
    /// period this falls in.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Free-form JSON, at most [`MAX_METADATA_BYTES`] serialized.
    pub metadata: serde_json::Value,
}

impl UsageEvent {
    /// An empty event for `org`.
    pub fn new(org: OrgId) -> Self {
        UsageEvent {
            id: None,
            org,
            user: None,
            provider: String::new(),
            model: String::new(),
            operation: String::new(),
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            quantities: BTreeMap::new(),
            cost_usd: None,
            occurred_at: None,
            metadata: serde_json::Value::Null,
        }
    }

    /// Sets the event id (for retries that must count once).
    pub fn id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: UserId) -> Self {
        self.user = Some(user);
        self
    }

    /// Sets provider, model and operation.
    pub fn ai_call(
        mut self,
        provider: impl Into<String>,
        model: impl Into<String>,
        operation: impl Into<String>,
    ) -> Self {
        self.provider = provider.into();
        self.model = model.into();
        self.operation = operation.into();
        self
    }

    /// Sets input, cached input and output tokens.
    pub fn tokens(mut self, input: u64, cached_input: u64, output: u64) -> Self {
        self.input_tokens = input;
        self.cached_input_tokens = cached_input;
        self.output_tokens = output;
        self
    }

    /// Adds `amount` of `metric`.
    pub fn quantity(mut self, metric: MetricKey, amount: Decimal) -> Self {
        *self.quantities.entry(metric).or_default() += amount;
        self
    }

    /// Sets the cost in US dollars.
    pub fn cost_usd(mut self, cost: Decimal) -> Self {
        self.cost_usd = Some(cost);
        self
    }

    /// Sets when it happened.
    pub fn at(mut self, occurred_at: DateTime<Utc>) -> Self {
        self.occurred_at = Some(occurred_at);
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Input + cached input + output tokens.
    pub fn total_tokens(&self) -> u128 {
        u128::from(self.input_tokens)
            + u128::from(self.cached_input_tokens)
            + u128::from(self.output_tokens)
    }

    /// The amount of each metric this event counts towards, validated.
    pub fn amounts(&self) -> Result<Vec<(MetricKey, Decimal)>> {
        let mut amounts = Vec::with_capacity(2 + self.quantities.len());
        let tokens = self.total_tokens();
        if tokens > 0 {
            let tokens = Decimal::from_i128_with_scale(tokens as i128, 0);
            amounts.push((MetricKey::tokens(), validate_amount("tokens", tokens)?));
        }
        if let Some(cost) = self.cost_usd {
            amounts.push((MetricKey::cost_usd(), validate_amount("cost_usd", cost)?));
        }
        for (metric, amount) in &self.quantities {
            let amount = validate_amount("quantity", *amount)?;
            match amounts.iter_mut().find(|(m, _)| m == metric) {
                // A quantity named `tokens` or `cost_usd` adds to the field.
                Some((_, existing)) => {
                    *existing = validate_amount("quantity", *existing + amount)?;
                }
                None => amounts.push((metric.clone(), amount)),
            }
        }
        Ok(amounts)
    }

    /// Checks labels, metadata and amounts; `InvalidInput` naming the field.
    /// Accepts exactly the events whose [`amounts`](Self::amounts) succeed,
    /// without allocating: this runs on every `UsageRecorder::record`.
    pub fn validate(&self) -> Result<()> {
        self.validate_labels_and_metadata()?;
        let tokens = self.total_tokens();
        // Integer comparison first: the common case never builds a Decimal.
        const MAX_TOKENS: u128 = 1_000_000_000_000_000_000;
        if tokens > MAX_TOKENS {
            validate_amount("tokens", Decimal::from_i128_with_scale(tokens as i128, 0))?;
        }
        if let Some(cost) = self.cost_usd {
            validate_amount("cost_usd", cost)?;
        }
        if self.quantities.is_empty() {
            return Ok(());
        }
        let tokens = Decimal::from_i128_with_scale(tokens as i128, 0);
        for (metric, amount) in &self.quantities {
            validate_amount("quantity", *amount)?;
            // A quantity named `tokens` or `cost_usd` adds to the field.
            let base = match metric.as_str() {
                "tokens" => tokens,
                "cost_usd" => self.cost_usd.unwrap_or_default(),
                _ => Decimal::ZERO,
            };
            validate_amount("quantity", base + *amount)?;
        }
        Ok(())
    }

    fn validate_labels_and_metadata(&self) -> Result<()> {
        for (field, label) in [
            ("provider", &self.provider),
            ("model", &self.model),
            ("operation", &self.operation),
        ] {
            // A char is at least one byte: only long labels need counting.
            if label.len() > MAX_LABEL_CHARS && label.chars().count() > MAX_LABEL_CHARS {
                return Err(Error::invalid_input(
                    field,
                    format!("longer than {MAX_LABEL_CHARS} characters"),
                ));
            }
        }
        if !self.metadata.is_null() {
            let mut size = ByteCount(0);
            serde_json::to_writer(&mut size, &self.metadata)
                .map_err(|e| Error::invalid_input("metadata", "not serializable").with_source(e))?;
            if size.0 > MAX_METADATA_BYTES {
                return Err(Error::invalid_input(
                    "metadata",
                    format!(
                        "{} bytes serialized; the limit is {MAX_METADATA_BYTES}",
                        size.0
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates the event and resolves its id, time and amounts into the
    /// record a store writes. `tz` is the organization's time zone, which
    /// decides the periods the event counts in.
    pub fn into_record(self, now: DateTime<Utc>, tz: Tz) -> Result<UsageRecord> {
        self.validate_labels_and_metadata()?;
        let amounts = self.amounts()?;
        let id = self.id.unwrap_or_else(EventId::new_v7);
        let occurred_at = self.occurred_at.unwrap_or(now);
        Ok(UsageRecord {
            id,
            occurred_at,
            periods: CurrentPeriods::at(occurred_at, tz),
            amounts,
            event: UsageEvent {
                id: Some(id),
                occurred_at: Some(occurred_at),
                ..self
            },
        })
    }
}

/// Counts the bytes written to it: the serialized size of metadata without
/// building the string.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A validated usage event as a store writes it: the event log row plus the
/// counters it adds to.
///
/// The store adds each amount to four counters — org-wide and the user's
/// own (when there is a user), daily and monthly — in the periods given,
/// and does so only the first time it sees `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The event id, the dedupe key.
    pub id: EventId,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The periods `occurred_at` falls in, in the organization's time zone.
    pub periods: CurrentPeriods,
    /// The amount of each metric.
    pub amounts: Vec<(MetricKey, Decimal)>,
    /// The event, with `id` and `occurred_at` filled in.
    pub event: UsageEvent,
}

impl UsageRecord {
    /// The organization.
    pub fn org(&self) -> OrgId {
        self.event.org
    }

    /// The user, if any.
    pub fn user(&self) -> Option<UserId> {
        self.event.user
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn amounts_sum_tokens_and_merge_quantities() {
        let e = UsageEvent::new(OrgId::new_v7())
            .tokens(10, 5, 20)
            .cost_usd(dec!(0.5))
            .quantity(MetricKey::ads_created(), dec!(1))
            .quantity(MetricKey::tokens(), dec!(1));
        let amounts = e.amounts().unwrap();
        assert!(amounts.contains(&(MetricKey::tokens(), dec!(36))));
        assert!(amounts.contains(&(MetricKey::cost_usd(), dec!(0.5))));
        assert!(amounts.contains(&(MetricKey::ads_created(), dec!(1))));
    }

    #[test]
    fn bad_events_name_the_field() {
        let org = OrgId::new_v7();
        let now = Utc::now();
        let neg = UsageEvent::new(org).quantity(MetricKey::ads_created(), dec!(-1));
        assert_eq!(
            neg.into_record(now, Tz::UTC).unwrap_err().field(),
            Some("quantity")
        );
        let neg_cost = UsageEvent::new(org).cost_usd(dec!(-0.01));
        assert_eq!(
            neg_cost.into_record(now, Tz::UTC).unwrap_err().field(),
            Some("cost_usd")
        );
        let big = UsageEvent::new(org).metadata(serde_json::json!("x".repeat(MAX_METADATA_BYTES)));
        assert_eq!(
            big.into_record(now, Tz::UTC).unwrap_err().field(),
            Some("metadata")
        );
        let long = UsageEvent::new(org).ai_call("p", "m".repeat(200), "op");
        assert_eq!(
            long.into_record(now, Tz::UTC).unwrap_err().field(),
            Some("model")
        );
        let huge = UsageEvent::new(org).tokens(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(
            huge.into_record(now, Tz::UTC).unwrap_err().field(),
            Some("tokens")
        );
    }

    #[test]
    fn record_fills_id_and_time() {
        let now = Utc::now();
        let r = UsageEvent::new(OrgId::new_v7())
            .tokens(1, 0, 0)
            .into_record(now, Tz::UTC)
            .unwrap();
        assert_eq!(r.occurred_at, now);
        assert_eq!(r.event.id, Some(r.id));
    }
}
