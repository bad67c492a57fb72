//! `PriceTable::from_json` on arbitrary bytes, then `cost` queries on every
//! table that parses.
//!
//! Input layout: the JSON text, then optionally a NUL byte (which JSON text
//! never holds) followed by bytes that `arbitrary` decodes into queries.
//! Without a query part, each model the JSON names is asked for once at the
//! far ends of time and with the largest token counts.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use tenancy::model::PriceTable;
use tenancy_fuzz::{accepted, text};

/// One `cost` call's arguments.
#[derive(Debug, Arbitrary)]
struct Query {
    /// Index (modulo their count) of a `(provider, model)` named in the
    /// JSON; `None` asks for `provider`/`model` instead.
    listed: Option<u8>,
    provider: String,
    model: String,
    /// Seconds since the epoch; out of chrono's range means its end.
    at: i64,
    input: u64,
    cached: u64,
    output: u64,
}

/// The call under test, kept apart so that a change to its shape is one
/// edit: an overflowing cost is an `InvalidInput` refusal, an unpriced model
/// `Ok(None)`.
fn cost(
    table: &PriceTable,
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
    query: &Query,
) -> tenancy::Result<Option<Decimal>> {
    table.cost(provider, model, at, query.input, query.cached, query.output)
}

/// The `(provider, model)` pairs the JSON names, in order.
fn listed_models(json: &str) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let Some(prices) = value.get("prices").and_then(|p| p.as_array()) else {
        return Vec::new();
    };
    prices
        .iter()
        .filter_map(|price| {
            let provider = price.get("provider")?.as_str()?;
            let model = price.get("model")?.as_str()?;
            Some((provider.to_owned(), model.to_owned()))
        })
        .collect()
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(if seconds < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn default_queries(models: &[(String, String)]) -> Vec<Query> {
    (0..models.len())
        .flat_map(|index| {
            [i64::MIN, i64::MAX].map(|at| Query {
                listed: u8::try_from(index).ok(),
                provider: String::new(),
                model: String::new(),
                at,
                input: u64::MAX,
                cached: u64::MAX,
                output: u64::MAX,
            })
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (json, queries) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let json = text(json);
    let Some(table) = accepted("PriceTable::from_json", PriceTable::from_json(&json)) else {
        return;
    };
    let models = listed_models(&json);
    let queries = match queries {
        Some(bytes) => {
            let Ok(queries) = Vec::<Query>::arbitrary_take_rest(Unstructured::new(bytes)) else {
                return;
            };
            queries
        }
        None => default_queries(&models),
    };
    for query in &queries {
        let (provider, model) = match query.listed {
            Some(index) if !models.is_empty() => {
                let (provider, model) = &models[usize::from(index) % models.len()];
                (provider.as_str(), model.as_str())
            }
            _ => (query.provider.as_str(), query.model.as_str()),
        };
        let at = instant(query.at);
        if let Some(Some(cost)) =
            accepted("PriceTable::cost", cost(&table, provider, model, at, query))
        {
            assert!(
                cost >= Decimal::ZERO,
                "{provider}/{model} at {at} cost {cost}, below zero"
            );
        }
    }
});
