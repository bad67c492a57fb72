//! Token prices per provider and model, with effective dates, for computing
//! the cost of an AI call when the caller does not supply it.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};

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

#[derive(Debug, Deserialize)]
struct PriceFile {
    prices: Vec<ModelPrice>,
}

/// Prices for many models, each possibly with several dated entries.
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
    by_model: HashMap<String, HashMap<String, Vec<ModelPrice>>>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// The small dated table shipped with the crate (list prices as of
    /// November 2026 for a few OpenAI, Anthropic and Google models). Load
    /// your own for billing: prices change.
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
        for price in file.prices {
            table.insert(price)?;
        }
        Ok(table)
    }

    /// Adds one dated price, checked as [`from_json`](Self::from_json) says.
    pub fn insert(&mut self, price: ModelPrice) -> Result<()> {
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
        for (name, value) in [
            ("input_per_million", price.input_per_million),
            ("cached_input_per_million", price.cached_input_per_million),
            ("output_per_million", price.output_per_million),
        ] {
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
        entries.retain(|p| p.effective_from != price.effective_from);
        entries.push(price);
        entries.sort_by_key(|p| p.effective_from);
        Ok(())
    }

    /// The price in effect for a model at `at`, if any.
    pub fn price(&self, provider: &str, model: &str, at: DateTime<Utc>) -> Option<&ModelPrice> {
        let day = at.date_naive();
        self.by_model
            .get(provider)?
            .get(model)?
            .iter()
            .rev()
            .find(|p| p.effective_from <= day)
    }

    /// The cost of a call, or `None` when the model has no price at `at`.
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
        let Some(price) = self.price(provider, model, at) else {
            return Ok(None);
        };
        let per_million = Decimal::from(1_000_000);
        let part = |tokens: u64, rate: Decimal| {
            Decimal::from(tokens)
                .checked_mul(rate)
                .and_then(|c| c.checked_div(per_million))
        };
        part(input_tokens, price.input_per_million)
            .zip(part(cached_input_tokens, price.cached_input_per_million))
            .and_then(|(a, b)| a.checked_add(b))
            .zip(part(output_tokens, price.output_per_million))
            .and_then(|(a, b)| a.checked_add(b))
            .map(|cost| Some(cost.normalize()))
            .ok_or_else(|| {
                Error::invalid_input(
                    "cost_usd",
                    format_args!(
                        "the cost of {}/{} at these token counts overflows",
                        quoted(provider),
                        quoted(model)
                    ),
                )
            })
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
