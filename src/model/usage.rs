//! The usage event, the rules for what it counts, and its store-ready form.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{EventId, MetricKey, OrgId, UserId};
use crate::limits::{CurrentPeriods, validate_amount};
use crate::model::json::{refuse_nul, serialized_len};

/// Longest provider, model or operation label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// Largest metadata accepted, as serialized JSON: 8 KiB. Usage rows are
/// written for every call; bulky payloads belong elsewhere.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// How far in the past an event's `occurred_at` may be when it is accepted:
/// 31 days. Older usage is refused (`InvalidInput` naming `occurred_at`):
/// it would land in periods long closed for billing.
pub const MAX_EVENT_AGE: TimeDelta = TimeDelta::days(31);

/// How far in the future an event's `occurred_at` may be when it is
/// accepted: 5 minutes of clock skew between the caller and this process.
pub const MAX_EVENT_LEAD: TimeDelta = TimeDelta::minutes(5);

/// One AI/API call or user activity to record.
///
/// What it counts towards ([`amounts`](Self::amounts), the one place this
/// rule lives; every store counts exactly these amounts):
/// - `tokens`: the sum of every token class (when any);
/// - `cost_usd`: its cost (when known);
/// - each named quantity (`ads_created: 1`, `images: 4`). A quantity named
///   `tokens` or `cost_usd` adds to that metric.
///
/// # Token classes
///
/// Each token is counted in exactly one class; classes never overlap:
/// - `input_tokens`: text input, excluding cache reads and cache writes;
/// - `cached_input_tokens`: input read from the provider's cache;
/// - `cache_write_tokens`: input written to the cache;
/// - `output_tokens`: text output, excluding reasoning;
/// - `reasoning_tokens`: reasoning ("thinking") output;
/// - `audio_input_tokens`, `audio_output_tokens`, `image_input_tokens`,
///   `image_output_tokens`: audio and image tokens, excluded from the text
///   classes.
///
/// Providers report these differently (OpenAI's `prompt_tokens` include
/// cached ones, its `completion_tokens` include reasoning; Anthropic's
/// `input_tokens` exclude both cache classes): subtract before passing, so
/// a cache read is priced once, at the cached rate.
///
/// # Cost and its provenance
///
/// A cost set with [`cost_usd`](Self::cost_usd) wins over any price table
/// and is marked [`CostSource::Provider`]; a cost the recorder computes
/// from its [`PriceTable`](crate::model::PriceTable) is marked
/// [`CostSource::PriceTable`] with the price that set it.
///
/// # Supported event times
///
/// `occurred_at` (the recording time when `None`) must lie within
/// [`MAX_EVENT_AGE`] before and [`MAX_EVENT_LEAD`] after the moment the
/// event is accepted (`Tenancy::record_usage`, `UsageRecorder::record`,
/// `Tenancy::commit_event`); anything else is `InvalidInput` naming
/// `occurred_at`. An event accepted by the recorder is delivered later,
/// even after an outage longer than the window: the window applies once,
/// when the event comes in.
///
/// ```
/// use rust_decimal_macros::dec;
/// use tenancy::{MetricKey, OrgId, UsageEvent};
/// let org = OrgId::new_v7();
/// let call = UsageEvent::new(org)
///     .ai_call("openai", "gpt-4o", "ad_copy")
///     .tokens(1200, 300, 450)
///     .cost_usd(dec!(0.0123));
/// let ad = UsageEvent::new(org).quantity(MetricKey::ADS_CREATED, dec!(1));
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
    /// Output tokens, excluding reasoning.
    pub output_tokens: u64,
    /// Input tokens written to the provider's cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Reasoning output tokens.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Audio input tokens.
    #[serde(default)]
    pub audio_input_tokens: u64,
    /// Audio output tokens.
    #[serde(default)]
    pub audio_output_tokens: u64,
    /// Image input tokens.
    #[serde(default)]
    pub image_input_tokens: u64,
    /// Image output tokens.
    #[serde(default)]
    pub image_output_tokens: u64,
    /// Other metrics and their amounts.
    pub quantities: BTreeMap<MetricKey, Decimal>,
    /// Cost in US dollars, when the caller knows it (or the recorder
    /// priced it).
    pub cost_usd: Option<Decimal>,
    /// Where `cost_usd` came from: set by [`cost_usd`](Self::cost_usd)
    /// ([`CostSource::Provider`]) or by the recorder's pricing
    /// ([`CostSource::PriceTable`]). `None` when there is no cost, or its
    /// origin is unknown (`cost_usd` set on the field directly, or the zero
    /// the recorder's `ZeroCost` policy fills in for an unpriced model).
    /// Dropped when `cost_usd` is `None`.
    #[serde(default)]
    pub cost_source: Option<CostSource>,
    /// When it happened; the recording time if `None`. Usage counts into the
    /// period this falls in (a committed reservation counts in the periods
    /// its hold was taken in instead).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Free-form JSON, at most [`MAX_METADATA_BYTES`] serialized, with no
    /// NUL character.
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
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            audio_input_tokens: 0,
            audio_output_tokens: 0,
            image_input_tokens: 0,
            image_output_tokens: 0,
            quantities: BTreeMap::new(),
            cost_usd: None,
            cost_source: None,
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

    /// Sets input (excluding cache reads and writes), cached input (cache
    /// reads) and output (excluding reasoning) tokens.
    pub fn tokens(mut self, input: u64, cached_input: u64, output: u64) -> Self {
        self.input_tokens = input;
        self.cached_input_tokens = cached_input;
        self.output_tokens = output;
        self
    }

    /// Sets the input tokens written to the provider's cache.
    pub fn cache_write_tokens(mut self, tokens: u64) -> Self {
        self.cache_write_tokens = tokens;
        self
    }

    /// Sets the reasoning output tokens (not also in `output_tokens`).
    pub fn reasoning_tokens(mut self, tokens: u64) -> Self {
        self.reasoning_tokens = tokens;
        self
    }

    /// Sets audio input and output tokens.
    pub fn audio_tokens(mut self, input: u64, output: u64) -> Self {
        self.audio_input_tokens = input;
        self.audio_output_tokens = output;
        self
    }

    /// Sets image input and output tokens.
    pub fn image_tokens(mut self, input: u64, output: u64) -> Self {
        self.image_input_tokens = input;
        self.image_output_tokens = output;
        self
    }

    /// Sets every token class at once.
    pub fn token_counts(mut self, counts: TokenCounts) -> Self {
        self.input_tokens = counts.input;
        self.cached_input_tokens = counts.cached_input;
        self.cache_write_tokens = counts.cache_write;
        self.output_tokens = counts.output;
        self.reasoning_tokens = counts.reasoning;
        self.audio_input_tokens = counts.audio_input;
        self.audio_output_tokens = counts.audio_output;
        self.image_input_tokens = counts.image_input;
        self.image_output_tokens = counts.image_output;
        self
    }

    /// The event's tokens by class.
    pub fn tokens_by_class(&self) -> TokenCounts {
        TokenCounts {
            input: self.input_tokens,
            cached_input: self.cached_input_tokens,
            cache_write: self.cache_write_tokens,
            output: self.output_tokens,
            reasoning: self.reasoning_tokens,
            audio_input: self.audio_input_tokens,
            audio_output: self.audio_output_tokens,
            image_input: self.image_input_tokens,
            image_output: self.image_output_tokens,
        }
    }

    /// Adds `amount` of `metric`. Sums saturate, so an absurd total is
    /// refused by validation rather than overflowing here.
    pub fn quantity(mut self, metric: MetricKey, amount: Decimal) -> Self {
        let total = self.quantities.entry(metric).or_default();
        *total = total.saturating_add(amount);
        self
    }

    /// Sets the cost in US dollars, as the provider (or the caller)
    /// reports it: it wins over any price table, and is marked
    /// [`CostSource::Provider`].
    pub fn cost_usd(mut self, cost: Decimal) -> Self {
        self.cost_usd = Some(cost);
        self.cost_source = Some(CostSource::Provider);
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

    /// The sum of every token class.
    pub fn total_tokens(&self) -> u128 {
        self.tokens_by_class().total()
    }

    /// The amount of each metric this event counts towards, validated: the
    /// rule in the [type docs](Self). Every amount is zero or more and at
    /// most [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT), or `InvalidInput`
    /// naming `tokens`, `cost_usd` or `quantity`.
    pub fn amounts(&self) -> Result<Vec<(MetricKey, Decimal)>> {
        let mut amounts = Vec::with_capacity(2 + self.quantities.len());
        let tokens = self.total_tokens();
        if tokens > 0 {
            amounts.push((
                MetricKey::TOKENS,
                validate_amount("tokens", decimal(tokens))?,
            ));
        }
        if let Some(cost) = self.cost_usd {
            amounts.push((MetricKey::COST_USD, validate_amount("cost_usd", cost)?));
        }
        for (metric, amount) in &self.quantities {
            let amount = validate_amount("quantity", *amount)?;
            match amounts.iter_mut().find(|(m, _)| m == metric) {
                Some((_, existing)) => {
                    *existing = validate_amount("quantity", existing.saturating_add(amount))?;
                }
                None => amounts.push((metric.clone(), amount)),
            }
        }
        Ok(amounts)
    }

    /// Checks labels, metadata and amounts; `InvalidInput` naming the field.
    /// Accepts exactly the events whose [`amounts`](Self::amounts) succeed,
    /// without allocating: this runs on every `UsageRecorder::record`. The
    /// event time is checked separately, against the moment of acceptance
    /// ([`check_time`](Self::check_time)).
    pub fn validate(&self) -> Result<()> {
        self.validate_labels_and_metadata()?;
        let tokens = self.total_tokens();
        // Integer comparison first: the common case never builds a Decimal.
        const MAX_TOKENS: u128 = 1_000_000_000_000_000_000;
        if tokens > MAX_TOKENS {
            validate_amount("tokens", decimal(tokens))?;
        }
        if let Some(cost) = self.cost_usd {
            validate_amount("cost_usd", cost)?;
        }
        if self.quantities.is_empty() {
            return Ok(());
        }
        for (metric, amount) in &self.quantities {
            validate_amount("quantity", *amount)?;
            let base = match metric.as_str() {
                "tokens" => decimal(tokens),
                "cost_usd" => self.cost_usd.unwrap_or_default(),
                _ => Decimal::ZERO,
            };
            validate_amount("quantity", base.saturating_add(*amount))?;
        }
        Ok(())
    }

    /// Checks that `occurred_at`, when set, lies within the supported window
    /// around `now` ([`MAX_EVENT_AGE`] before, [`MAX_EVENT_LEAD`] after);
    /// otherwise `InvalidInput` naming `occurred_at`.
    pub fn check_time(&self, now: DateTime<Utc>) -> Result<()> {
        let Some(at) = self.occurred_at else {
            return Ok(());
        };
        let earliest = now.checked_sub_signed(MAX_EVENT_AGE);
        let latest = now.checked_add_signed(MAX_EVENT_LEAD);
        if earliest.is_some_and(|e| at < e) {
            return Err(Error::invalid_input(
                "occurred_at",
                format_args!(
                    "{at} is more than {} days before now ({now})",
                    MAX_EVENT_AGE.num_days()
                ),
            ));
        }
        if latest.is_some_and(|l| at > l) {
            return Err(Error::invalid_input(
                "occurred_at",
                format_args!(
                    "{at} is more than {} minutes after now ({now})",
                    MAX_EVENT_LEAD.num_minutes()
                ),
            ));
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
                    format_args!("longer than {MAX_LABEL_CHARS} characters"),
                ));
            }
            if label.contains('\0') {
                return Err(Error::invalid_input(
                    field,
                    "holds a NUL character, which cannot be stored",
                ));
            }
        }
        if !self.metadata.is_null() {
            let size = serialized_len(&self.metadata);
            if size > MAX_METADATA_BYTES {
                return Err(Error::invalid_input(
                    "metadata",
                    format_args!("{size} bytes serialized; the limit is {MAX_METADATA_BYTES}"),
                ));
            }
            refuse_nul("metadata", &self.metadata)?;
        }
        Ok(())
    }

    /// Validates the event (time window included) and resolves its id, time
    /// and amounts into the record a store writes. `now` is the moment of
    /// acceptance and the default event time; `tz` is the organization's
    /// time zone, which decides the periods the event counts in.
    pub fn into_record(self, now: DateTime<Utc>, tz: Tz) -> Result<UsageRecord> {
        self.check_time(now)?;
        self.into_record_accepted(now, tz)
    }

    /// [`into_record`](Self::into_record) for an event accepted earlier (its
    /// time window checked then): a recorder delivering after an outage.
    pub(crate) fn into_record_accepted(self, now: DateTime<Utc>, tz: Tz) -> Result<UsageRecord> {
        self.into_record_counted_in(now, |occurred_at| CurrentPeriods::at(occurred_at, tz))
    }

    /// [`into_record_accepted`](Self::into_record_accepted), counted in the
    /// periods `periods_of` gives for the event's time: a reservation's
    /// commit counts in the periods of its hold.
    pub(crate) fn into_record_counted_in(
        self,
        now: DateTime<Utc>,
        periods_of: impl FnOnce(DateTime<Utc>) -> CurrentPeriods,
    ) -> Result<UsageRecord> {
        self.validate_labels_and_metadata()?;
        let amounts = self.amounts()?;
        let id = self.id.unwrap_or_else(EventId::new_v7);
        let occurred_at = self.occurred_at.unwrap_or(now);
        // No provenance without a cost.
        let cost_source = self.cost_usd.and(self.cost_source);
        Ok(UsageRecord {
            id,
            occurred_at,
            periods: periods_of(occurred_at),
            amounts,
            event: UsageEvent {
                id: Some(id),
                occurred_at: Some(occurred_at),
                cost_source,
                ..self
            },
        })
    }
}

/// Tokens by class (see [`UsageEvent`]'s token classes). Sums saturate at
/// `u64::MAX`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Text input, excluding cache reads and writes.
    #[serde(default)]
    pub input: u64,
    /// Input read from the cache.
    #[serde(default)]
    pub cached_input: u64,
    /// Input written to the cache.
    #[serde(default)]
    pub cache_write: u64,
    /// Text output, excluding reasoning.
    #[serde(default)]
    pub output: u64,
    /// Reasoning output.
    #[serde(default)]
    pub reasoning: u64,
    /// Audio input.
    #[serde(default)]
    pub audio_input: u64,
    /// Audio output.
    #[serde(default)]
    pub audio_output: u64,
    /// Image input.
    #[serde(default)]
    pub image_input: u64,
    /// Image output.
    #[serde(default)]
    pub image_output: u64,
}

impl TokenCounts {
    /// Each class's name (as in SQL columns, without `_tokens`) and count.
    pub fn classes(&self) -> [(&'static str, u64); 9] {
        [
            ("input", self.input),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("output", self.output),
            ("reasoning", self.reasoning),
            ("audio_input", self.audio_input),
            ("audio_output", self.audio_output),
            ("image_input", self.image_input),
            ("image_output", self.image_output),
        ]
    }

    /// The sum of every class.
    pub fn total(&self) -> u128 {
        self.classes().iter().map(|(_, n)| u128::from(*n)).sum()
    }

    /// Whether every class is zero.
    pub fn is_zero(&self) -> bool {
        self.total() == 0
    }

    /// Adds `other` class by class, saturating.
    pub fn add(&mut self, other: &TokenCounts) {
        self.input = self.input.saturating_add(other.input);
        self.cached_input = self.cached_input.saturating_add(other.cached_input);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
        self.audio_input = self.audio_input.saturating_add(other.audio_input);
        self.audio_output = self.audio_output.saturating_add(other.audio_output);
        self.image_input = self.image_input.saturating_add(other.image_input);
        self.image_output = self.image_output.saturating_add(other.image_output);
    }
}

/// Where an event's cost came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CostSource {
    /// The caller set it (as the provider reported it): it wins over any
    /// price table.
    Provider,
    /// Computed from a price table.
    PriceTable {
        /// The price's provider.
        provider: String,
        /// The price's model.
        model: String,
        /// The first day the price applied.
        effective_from: chrono::NaiveDate,
        /// The table's label ([`PriceTable::label`](crate::model::PriceTable::label)).
        table: String,
    },
}

impl CostSource {
    /// `provider` or `price_table`, as the SQL column `cost_source` holds it.
    pub fn kind(&self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::PriceTable { .. } => "price_table",
        }
    }
}

/// A token count as a `Decimal`, saturating (counts past `Decimal`'s range
/// are refused by validation anyway).
fn decimal(tokens: u128) -> Decimal {
    i128::try_from(tokens)
        .ok()
        .and_then(|t| Decimal::try_from_i128_with_scale(t, 0).ok())
        .unwrap_or(Decimal::MAX)
}

/// A validated usage event as a store writes it: the event log row plus the
/// counters it adds to.
///
/// The store adds each of `amounts` — computed by
/// [`UsageEvent::amounts`], never recomputed by a store — to four counters:
/// org-wide and the user's own (when there is a user), daily and monthly,
/// in the periods given; and does so only the first time it sees `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The event id, the dedupe key.
    pub id: EventId,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The periods it counts in, in the organization's time zone.
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
            .quantity(MetricKey::ADS_CREATED, dec!(1))
            .quantity(MetricKey::TOKENS, dec!(1));
        let amounts = e.amounts().unwrap();
        assert!(amounts.contains(&(MetricKey::TOKENS, dec!(36))));
        assert!(amounts.contains(&(MetricKey::COST_USD, dec!(0.5))));
        assert!(amounts.contains(&(MetricKey::ADS_CREATED, dec!(1))));
    }

    #[test]
    fn tokens_count_every_class_once() {
        let e = UsageEvent::new(OrgId::new_v7())
            .tokens(1, 2, 4)
            .cache_write_tokens(8)
            .reasoning_tokens(16)
            .audio_tokens(32, 64)
            .image_tokens(128, 256);
        assert_eq!(e.total_tokens(), 511);
        assert_eq!(e.tokens_by_class().total(), 511);
        assert_eq!(
            UsageEvent::new(e.org).token_counts(e.tokens_by_class()),
            UsageEvent {
                org: e.org,
                ..e.clone()
            }
        );
        assert!(
            e.amounts()
                .unwrap()
                .contains(&(MetricKey::TOKENS, dec!(511)))
        );
    }

    #[test]
    fn a_provider_cost_is_marked_and_no_cost_has_no_source() {
        let now = Utc::now();
        let org = OrgId::new_v7();
        let r = UsageEvent::new(org)
            .cost_usd(dec!(1))
            .into_record(now, Tz::UTC)
            .unwrap();
        assert_eq!(r.event.cost_source, Some(CostSource::Provider));
        let mut stray = UsageEvent::new(org);
        stray.cost_source = Some(CostSource::Provider);
        let r = stray.into_record(now, Tz::UTC).unwrap();
        assert_eq!(r.event.cost_source, None);
        // Events spooled before the token classes existed still parse.
        let old = serde_json::json!({
            "id": null, "org": org, "user": null, "provider": "", "model": "",
            "operation": "", "input_tokens": 1, "cached_input_tokens": 0,
            "output_tokens": 0, "quantities": {}, "cost_usd": null,
            "occurred_at": null, "metadata": null
        });
        let parsed: UsageEvent = serde_json::from_value(old).unwrap();
        assert_eq!(parsed.total_tokens(), 1);
    }

    #[test]
    fn bad_events_name_the_field() {
        let org = OrgId::new_v7();
        let now = Utc::now();
        let field = |e: UsageEvent| e.into_record(now, Tz::UTC).unwrap_err().field();
        let neg = UsageEvent::new(org).quantity(MetricKey::ADS_CREATED, dec!(-1));
        assert_eq!(field(neg), Some("quantity"));
        assert_eq!(
            field(UsageEvent::new(org).cost_usd(dec!(-0.01))),
            Some("cost_usd")
        );
        let big = UsageEvent::new(org).metadata(serde_json::json!("x".repeat(MAX_METADATA_BYTES)));
        assert_eq!(field(big), Some("metadata"));
        let long = UsageEvent::new(org).ai_call("p", "m".repeat(200), "op");
        assert_eq!(field(long), Some("model"));
        let huge = UsageEvent::new(org).tokens(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(field(huge), Some("tokens"));
        let nul = UsageEvent::new(org).ai_call("open\0ai", "m", "op");
        assert_eq!(field(nul), Some("provider"));
        let nul_meta = UsageEvent::new(org).metadata(serde_json::json!({"k": "a\u{0}"}));
        assert_eq!(field(nul_meta), Some("metadata"));
    }

    #[test]
    fn quantities_that_overflow_saturate_and_are_refused() {
        let e = UsageEvent::new(OrgId::new_v7())
            .quantity(MetricKey::ADS_CREATED, Decimal::MAX)
            .quantity(MetricKey::ADS_CREATED, Decimal::MAX);
        assert_eq!(e.validate().unwrap_err().field(), Some("quantity"));
    }

    #[test]
    fn event_times_outside_the_window_are_refused() {
        let now = Utc::now();
        let org = OrgId::new_v7();
        for at in [
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
            now + TimeDelta::minutes(6),
            now - TimeDelta::days(32),
        ] {
            let err = UsageEvent::new(org)
                .at(at)
                .into_record(now, Tz::UTC)
                .unwrap_err();
            assert_eq!(err.field(), Some("occurred_at"), "{at}");
        }
        for at in [now + TimeDelta::minutes(4), now - TimeDelta::days(30)] {
            assert!(
                UsageEvent::new(org)
                    .at(at)
                    .into_record(now, Tz::UTC)
                    .is_ok()
            );
        }
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
