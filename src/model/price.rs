//! Token prices per provider and model, with effective dates, for computing
//! the cost of an AI call when the caller does not supply it.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};
use crate::model::usage::{CostSource, TokenCounts};

/// The highest price accepted, in US dollars per million tokens: 1 000 000
/// (a dollar a token). With token counts bounded by
/// [`MAX_AMOUNT`](crate::limits::MAX_AMOUNT), no cost can overflow.
pub const MAX_PRICE_PER_MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// Longest provider or model name in a price table, in characters (as for
/// usage events' labels).
const MAX_NAME_CHARS: usize = crate::model::usage::MAX_LABEL_CHARS;

/// The price of one model from one date on, in US dollars per million
/// tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// The provider (`openai`).
    pub provider: String,
    /// The model (`gpt-4o`).
    pub model: String,
    /// The first day (UTC) this price applies.
    pub effective_from: NaiveDate,
    /// Per million input tokens (excluding cached ones).
    pub input_per_million: Decimal,
    /// Per million cached input tokens.
    pub cached_input_per_million: Decimal,
    /// Per million output tokens.
    pub output_per_million: Decimal,
}

/// Rates for the token classes beyond input, cached input and output, in
/// US dollars per million tokens; `None` where the model does not price
/// the class.
///
/// # How an event is priced
///
/// Each class is priced once, at its own rate: cached input (cache reads)
/// at `cached_input_per_million` only, never also as input (the
/// double count behind LiteLLM #14849 cannot happen, since input tokens
/// exclude cache reads). Where a rate is missing:
/// - cache writes are priced at the input rate (what they would cost
///   uncached);
/// - reasoning tokens at the output rate (providers bill them as output);
/// - audio and image tokens have no fallback: an event with tokens in such
///   a class is **unpriced** under this price ([`Unpriced::NoRate`]), as an
///   unknown model is, so the gap shows instead of a silently low cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRates {
    /// Per million input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_million: Option<Decimal>,
    /// Per million reasoning tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_per_million: Option<Decimal>,
    /// Per million audio input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_input_per_million: Option<Decimal>,
    /// Per million audio output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_output_per_million: Option<Decimal>,
    /// Per million image input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_input_per_million: Option<Decimal>,
    /// Per million image output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_output_per_million: Option<Decimal>,
}

impl ClassRates {
    fn named(&self) -> [(&'static str, Option<Decimal>); 6] {
        [
            ("cache_write_per_million", self.cache_write_per_million),
            ("reasoning_per_million", self.reasoning_per_million),
            ("audio_input_per_million", self.audio_input_per_million),
            ("audio_output_per_million", self.audio_output_per_million),
            ("image_input_per_million", self.image_input_per_million),
            ("image_output_per_million", self.image_output_per_million),
        ]
    }
}

/// One dated price with its class rates: an entry of a [`PriceTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// The base price (input, cached input, output).
    pub price: ModelPrice,
    /// The other classes' rates.
    pub rates: ClassRates,
}

/// A priced event: its cost and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The cost in US dollars.
    pub cost: Decimal,
    /// [`CostSource::PriceTable`] naming the price and the table.
    pub source: CostSource,
}

/// Why an event could not be priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpriced {
    /// The table has no price for the model at that time.
    NoPrice,
    /// The price lacks a rate for a class the event has tokens in (the
    /// class's name, as in [`TokenCounts::classes`]).
    NoRate(&'static str),
}

#[derive(Debug, Deserialize)]
struct PriceFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    as_of: Option<NaiveDate>,
    prices: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
struct FileEntry {
    provider: String,
    model: String,
    effective_from: NaiveDate,
    input_per_million: Decimal,
    cached_input_per_million: Decimal,
    output_per_million: Decimal,
    #[serde(default)]
    cache_write_per_million: Option<Decimal>,
    #[serde(default)]
    reasoning_per_million: Option<Decimal>,
    #[serde(default)]
    audio_input_per_million: Option<Decimal>,
    #[serde(default)]
    audio_output_per_million: Option<Decimal>,
    #[serde(default)]
    image_input_per_million: Option<Decimal>,
    #[serde(default)]
    image_output_per_million: Option<Decimal>,
}

/// Prices for many models, each possibly with several dated entries, and
/// a label (`name` and `as_of` in JSON) that events priced from it carry
/// in their [`CostSource`].
///
/// Optional per-entry rates for the other token classes
/// (`cache_write_per_million`, `reasoning_per_million`,
/// `audio_input_per_million`, `audio_output_per_million`,
/// `image_input_per_million`, `image_output_per_million`): see
/// [`ClassRates`] for how an event is priced.
///
/// ```
/// use chrono::Utc;
/// use rust_decimal_macros::dec;
/// use tenancy::model::PriceTable;
///
/// let table = PriceTable::from_json(r#"{"prices": [
///   {"provider": "openai", "model": "gpt-4o", "effective_from": "2024-10-01",
///    "input_per_million": "2.50", "cached_input_per_million": "1.25", "output_per_million": "10"}
/// ]}"#)?;
/// let cost = table.cost("openai", "gpt-4o", Utc::now(), 1_000_000, 0, 100_000)?;
/// assert_eq!(cost, Some(dec!(3.50)));
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    /// By provider, then model (nested, so a lookup by `&str` allocates
    /// nothing); entries sorted by `effective_from`.
    by_model: HashMap<String, HashMap<String, Vec<PriceEntry>>>,
    name: Option<String>,
    as_of: Option<NaiveDate>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// The small dated table shipped with the crate (illustrative list
    /// prices as of 2026-11-01 for a few OpenAI, Anthropic and Google
    /// models, every token class each of them bills; label
    /// `tenancy-default@2026-11-01`). Load your own for billing: prices
    /// change.
    pub fn shipped() -> Self {
        PriceTable::from_json(include_str!("default_prices.json"))
            .unwrap_or_else(|e| unreachable!("the shipped price table parses: {e}"))
    }

    /// Parses `{"prices": [ModelPrice, …]}`. A malformed table, a negative
    /// price, a price above [`MAX_PRICE_PER_MILLION`], or a provider or model
    /// name that is empty, longer than 128 characters or holds a NUL, is
    /// `InvalidInput` naming `prices`.
    pub fn from_json(json: &str) -> Result<Self> {
        let file: PriceFile = serde_json::from_str(json)
            .map_err(|e| Error::invalid_input("prices", "not a price table").with_source(e))?;
        let mut table = PriceTable::new();
        if let Some(name) = &file.name
            && (name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0'))
        {
            return Err(Error::invalid_input(
                "prices",
                format_args!("name must be 1 to {MAX_NAME_CHARS} characters without NUL"),
            ));
        }
        table.name = file.name;
        table.as_of = file.as_of;
        for e in file.prices {
            table.insert_with_rates(
                ModelPrice {
                    provider: e.provider,
                    model: e.model,
                    effective_from: e.effective_from,
                    input_per_million: e.input_per_million,
                    cached_input_per_million: e.cached_input_per_million,
                    output_per_million: e.output_per_million,
                },
                ClassRates {
                    cache_write_per_million: e.cache_write_per_million,
                    reasoning_per_million: e.reasoning_per_million,
                    audio_input_per_million: e.audio_input_per_million,
                    audio_output_per_million: e.audio_output_per_million,
                    image_input_per_million: e.image_input_per_million,
                    image_output_per_million: e.image_output_per_million,
                },
            )?;
        }
        Ok(table)
    }

    /// Names the table (and dates it): its [`label`](Self::label).
    pub fn with_label(mut self, name: impl Into<String>, as_of: Option<NaiveDate>) -> Self {
        self.name = Some(name.into());
        self.as_of = as_of;
        self
    }

    /// The table's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The date the table's prices were checked, if given.
    pub fn as_of(&self) -> Option<NaiveDate> {
        self.as_of
    }

    /// The label priced events carry: `name@as_of`, `name`, `as_of`, or
    /// `unnamed` when the table has neither.
    pub fn label(&self) -> String {
        match (&self.name, self.as_of) {
            (Some(n), Some(d)) => format!("{n}@{d}"),
            (Some(n), None) => n.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "unnamed".to_owned(),
        }
    }

    /// Adds one dated price, checked as [`from_json`](Self::from_json) says,
    /// without rates for the other classes.
    pub fn insert(&mut self, price: ModelPrice) -> Result<()> {
        self.insert_with_rates(price, ClassRates::default())
    }

    /// Adds one dated price with its class rates (each checked as the base
    /// rates are), replacing an entry of the same model and date.
    pub fn insert_with_rates(&mut self, price: ModelPrice, rates: ClassRates) -> Result<()> {
        for (what, name) in [("provider", &price.provider), ("model", &price.model)] {
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
                return Err(Error::invalid_input(
                    "prices",
                    format_args!(
                        "{what} {} must be 1 to {MAX_NAME_CHARS} characters without NUL",
                        quoted(name)
                    ),
                ));
            }
        }
        let base = [
            ("input_per_million", Some(price.input_per_million)),
            (
                "cached_input_per_million",
                Some(price.cached_input_per_million),
            ),
            ("output_per_million", Some(price.output_per_million)),
        ];
        for (name, value) in base
            .into_iter()
            .chain(rates.named())
            .filter_map(|(n, v)| v.map(|v| (n, v)))
        {
            if (value.is_sign_negative() && !value.is_zero()) || value > MAX_PRICE_PER_MILLION {
                return Err(Error::invalid_input(
                    "prices",
                    format_args!(
                        "{}/{}: {name} {value} is outside 0..={MAX_PRICE_PER_MILLION}",
                        quoted(&price.provider),
                        quoted(&price.model)
                    ),
                ));
            }
        }
        let entries = self
            .by_model
            .entry(price.provider.clone())
            .or_default()
            .entry(price.model.clone())
            .or_default();
        entries.retain(|p| p.price.effective_from != price.effective_from);
        entries.push(PriceEntry { price, rates });
        entries.sort_by_key(|p| p.price.effective_from);
        Ok(())
    }

    /// The price in effect for a model at `at`, if any.
    pub fn price(&self, provider: &str, model: &str, at: DateTime<Utc>) -> Option<&ModelPrice> {
        self.entry(provider, model, at).map(|e| &e.price)
    }

    /// The price in effect for a model at `at` with its class rates.
    pub fn entry(&self, provider: &str, model: &str, at: DateTime<Utc>) -> Option<&PriceEntry> {
        let day = at.date_naive();
        self.by_model
            .get(provider)?
            .get(model)?
            .iter()
            .rev()
            .find(|p| p.price.effective_from <= day)
    }

    /// Prices tokens of every class for a call at `at` (the rules in
    /// [`ClassRates`]): the cost and a [`CostSource::PriceTable`] naming the
    /// price and this table's [`label`](Self::label); or why it cannot.
    /// `InvalidInput` naming `cost_usd` if the cost overflows.
    pub fn quote(
        &self,
        provider: &str,
        model: &str,
        at: DateTime<Utc>,
        tokens: &TokenCounts,
    ) -> Result<std::result::Result<Priced, Unpriced>> {
        let Some(entry) = self.entry(provider, model, at) else {
            return Ok(Err(Unpriced::NoPrice));
        };
        let (p, r) = (&entry.price, &entry.rates);
        let rated = [
            ("input", tokens.input, Some(p.input_per_million)),
            (
                "cached_input",
                tokens.cached_input,
                Some(p.cached_input_per_million),
            ),
            (
                "cache_write",
                tokens.cache_write,
                r.cache_write_per_million.or(Some(p.input_per_million)),
            ),
            ("output", tokens.output, Some(p.output_per_million)),
            (
                "reasoning",
                tokens.reasoning,
                r.reasoning_per_million.or(Some(p.output_per_million)),
            ),
            ("audio_input", tokens.audio_input, r.audio_input_per_million),
            (
                "audio_output",
                tokens.audio_output,
                r.audio_output_per_million,
            ),
            ("image_input", tokens.image_input, r.image_input_per_million),
            (
                "image_output",
                tokens.image_output,
                r.image_output_per_million,
            ),
        ];
        let per_million = Decimal::from(1_000_000);
        let overflow = || {
            Error::invalid_input(
                "cost_usd",
                format_args!(
                    "the cost of {}/{} at these token counts overflows",
                    quoted(provider),
                    quoted(model)
                ),
            )
        };
        let mut cost = Decimal::ZERO;
        for (class, count, rate) in rated {
            if count == 0 {
                continue;
            }
            let Some(rate) = rate else {
                return Ok(Err(Unpriced::NoRate(class)));
            };
            let part = Decimal::from(count)
                .checked_mul(rate)
                .and_then(|c| c.checked_div(per_million))
                .ok_or_else(overflow)?;
            cost = cost.checked_add(part).ok_or_else(overflow)?;
        }
        Ok(Ok(Priced {
            cost: cost.normalize(),
            source: CostSource::PriceTable {
                provider: p.provider.clone(),
                model: p.model.clone(),
                effective_from: p.effective_from,
                table: self.label(),
            },
        }))
    }

    /// The cost of a call with input, cached input and output tokens, or
    /// `None` when the model has no price at `at` ([`quote`](Self::quote)
    /// prices every class and says where the cost came from).
    /// Computed with checked arithmetic: a cost that does not fit is
    /// `InvalidInput` naming `cost_usd` (prices are bounded, so it takes
    /// token counts far beyond what an event may carry).
    pub fn cost(
        &self,
        provider: &str,
        model: &str,
        at: DateTime<Utc>,
        input_tokens: u64,
        cached_input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Option<Decimal>> {
        let tokens = TokenCounts {
            input: input_tokens,
            cached_input: cached_input_tokens,
            output: output_tokens,
            ..TokenCounts::default()
        };
        Ok(self
            .quote(provider, model, at, &tokens)?
            .ok()
            .map(|p| p.cost))
    }

    /// How many dated entries the table holds.
    pub fn len(&self) -> usize {
        self.by_model
            .values()
            .flat_map(HashMap::values)
            .map(Vec::len)
            .sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn at(day: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{day}T12:00:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn shipped_table_prices_known_models() {
        let table = PriceTable::shipped();
        assert!(table.len() >= 8);
        let cost = table
            .cost(
                "openai",
                "gpt-4o",
                at("2026-11-01"),
                1_000_000,
                1_000_000,
                1_000_000,
            )
            .unwrap();
        assert_eq!(cost, Some(dec!(13.75)));
        assert_eq!(
            table
                .cost("openai", "gpt-9", at("2026-11-01"), 1, 0, 0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn effective_dates_pick_the_latest_entry_not_after_the_call() {
        let mut table = PriceTable::new();
        for (from, input) in [("2025-01-01", dec!(4)), ("2026-01-01", dec!(2))] {
            table
                .insert(ModelPrice {
                    provider: "p".into(),
                    model: "m".into(),
                    effective_from: from.parse().unwrap(),
                    input_per_million: input,
                    cached_input_per_million: dec!(0),
                    output_per_million: dec!(0),
                })
                .unwrap();
        }
        assert_eq!(
            table
                .cost("p", "m", at("2024-12-31"), 1_000_000, 0, 0)
                .unwrap(),
            None
        );
        assert_eq!(
            table
                .cost("p", "m", at("2025-06-01"), 1_000_000, 0, 0)
                .unwrap(),
            Some(dec!(4))
        );
        assert_eq!(
            table
                .cost("p", "m", at("2026-01-01"), 1_000_000, 0, 0)
                .unwrap(),
            Some(dec!(2))
        );
    }

    #[test]
    fn prices_are_bounded_so_costs_never_overflow() {
        let price = |input: Decimal| ModelPrice {
            provider: "p".into(),
            model: "m".into(),
            effective_from: "2025-01-01".parse().unwrap(),
            input_per_million: input,
            cached_input_per_million: input,
            output_per_million: input,
        };
        let mut table = PriceTable::new();
        let err = table
            .insert(price(MAX_PRICE_PER_MILLION + Decimal::ONE))
            .unwrap_err();
        assert_eq!(err.field(), Some("prices"));
        table.insert(price(MAX_PRICE_PER_MILLION)).unwrap();
        let cost = table
            .cost("p", "m", at("2026-01-01"), u64::MAX, u64::MAX, u64::MAX)
            .unwrap()
            .unwrap();
        assert!(cost > Decimal::ZERO);
        assert!(
            table
                .insert(ModelPrice {
                    provider: "a\0".into(),
                    ..price(dec!(1))
                })
                .is_err()
        );
    }

    fn tokens(f: impl FnOnce(&mut TokenCounts)) -> TokenCounts {
        let mut t = TokenCounts::default();
        f(&mut t);
        t
    }

    /// LiteLLM #14849: Gemini cache reads were priced as input and again as
    /// cached input. A cache read is priced at the cached rate, once.
    #[test]
    fn a_cache_read_is_priced_at_the_cached_rate_only() {
        let table = PriceTable::shipped();
        let at = at("2026-11-01");
        let read = tokens(|t| t.cached_input = 1_000_000);
        let priced = table
            .quote("google", "gemini-2.5-flash", at, &read)
            .unwrap()
            .unwrap();
        assert_eq!(priced.cost, dec!(0.075));
        let both = tokens(|t| {
            t.input = 1_000_000;
            t.cached_input = 1_000_000;
        });
        let priced = table
            .quote("google", "gemini-2.5-flash", at, &both)
            .unwrap()
            .unwrap();
        assert_eq!(priced.cost, dec!(0.375));
    }

    #[test]
    fn reasoning_and_cache_writes_are_priced() {
        let table = PriceTable::shipped();
        let at = at("2026-11-01");
        let t = tokens(|t| {
            t.cache_write = 1_000_000;
            t.reasoning = 1_000_000;
        });
        let priced = table
            .quote("anthropic", "claude-sonnet-4", at, &t)
            .unwrap()
            .unwrap();
        assert_eq!(priced.cost, dec!(18.75));
        assert_eq!(
            priced.source,
            CostSource::PriceTable {
                provider: "anthropic".into(),
                model: "claude-sonnet-4".into(),
                effective_from: "2025-05-22".parse().unwrap(),
                table: "tenancy-default@2026-11-01".into(),
            }
        );
        // Without their own rates: cache writes at input, reasoning at output.
        let mut bare = PriceTable::new();
        bare.insert(ModelPrice {
            provider: "p".into(),
            model: "m".into(),
            effective_from: "2025-01-01".parse().unwrap(),
            input_per_million: dec!(1),
            cached_input_per_million: dec!(0.1),
            output_per_million: dec!(4),
        })
        .unwrap();
        let priced = bare.quote("p", "m", at, &t).unwrap().unwrap();
        assert_eq!(priced.cost, dec!(5));
        let audio = tokens(|t| t.audio_input = 10);
        assert_eq!(
            bare.quote("p", "m", at, &audio).unwrap(),
            Err(Unpriced::NoRate("audio_input"))
        );
        assert_eq!(
            bare.quote("p", "x", at, &audio).unwrap(),
            Err(Unpriced::NoPrice)
        );
    }

    #[test]
    fn the_shipped_table_is_dated_and_covers_its_classes() {
        let table = PriceTable::shipped();
        assert_eq!(table.as_of(), Some("2026-11-01".parse().unwrap()));
        assert_eq!(table.label(), "tenancy-default@2026-11-01");
        let t = tokens(|t| {
            t.audio_input = 1_000_000;
            t.audio_output = 1_000_000;
        });
        let priced = table
            .quote("openai", "gpt-4o-audio-preview", at("2026-11-01"), &t)
            .unwrap()
            .unwrap();
        assert_eq!(priced.cost, dec!(120));
        let img = tokens(|t| t.image_output = 1_000_000);
        let priced = table
            .quote("openai", "gpt-image-1", at("2026-11-01"), &img)
            .unwrap()
            .unwrap();
        assert_eq!(priced.cost, dec!(40));
    }

    #[test]
    fn bad_tables_are_invalid_input() {
        assert_eq!(
            PriceTable::from_json("{").unwrap_err().field(),
            Some("prices")
        );
        let negative = r#"{"prices": [{"provider": "p", "model": "m", "effective_from": "2025-01-01",
            "input_per_million": "-1", "cached_input_per_million": "0", "output_per_million": "0"}]}"#;
        assert_eq!(
            PriceTable::from_json(negative).unwrap_err().field(),
            Some("prices")
        );
    }
}
