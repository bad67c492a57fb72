//! Every string parser and validating constructor, fed the same text.
//!
//! Single-argument parsers get the whole input. Constructors with several
//! arguments get it whole in each position, and also split at newlines
//! (`name\nslug\ntimezone`, `limit_type\n…`). An accepted value must survive
//! a round trip through its text form; a known limit type takes exactly the
//! limit values the rule allows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use tenancy::limits::{LimitMode, LimitType};
use tenancy::limits::{MAX_AMOUNT, MIN_NONZERO_LIMIT};
use tenancy::model::PriceTable;
use tenancy::{
    FeatureKey, MetricKey, NewLimit, NewOrganization, OrgId, Period, Role, Slug, UserId,
};
use tenancy_fuzz::{accepted, text};

/// Limit values at and around the edges `NewLimit` must police: zero (and
/// minus zero), `MIN_NONZERO_LIMIT` and just below it, `MAX_AMOUNT` and
/// either side of it, negatives, and `Decimal`'s ends.
fn limit_values() -> [Decimal; 12] {
    let tiny = Decimal::new(1, 10);
    [
        Decimal::ZERO,
        -Decimal::ZERO,
        MIN_NONZERO_LIMIT,
        MIN_NONZERO_LIMIT - tiny,
        -MIN_NONZERO_LIMIT,
        Decimal::ONE,
        Decimal::NEGATIVE_ONE,
        MAX_AMOUNT - tiny,
        MAX_AMOUNT,
        MAX_AMOUNT + tiny,
        Decimal::MAX,
        Decimal::MIN,
    ]
}

/// The rule for a limit's value: zero, or from `MIN_NONZERO_LIMIT` to
/// `MAX_AMOUNT`.
fn valid_limit(value: Decimal) -> bool {
    value.is_zero() || (MIN_NONZERO_LIMIT..=MAX_AMOUNT).contains(&value)
}

fn names(input: &str) {
    if let Some(slug) = accepted("Slug::parse", Slug::parse(input)) {
        assert_eq!(Slug::parse(slug.as_str()).ok().as_ref(), Some(&slug));
    }
    if let Some(key) = accepted("FeatureKey::parse", FeatureKey::parse(input)) {
        assert_eq!(FeatureKey::parse(key.as_str()).ok().as_ref(), Some(&key));
    }
    if let Some(key) = accepted("MetricKey::parse", MetricKey::parse(input)) {
        assert_eq!(MetricKey::parse(key.as_str()).ok().as_ref(), Some(&key));
    }
}

fn ids(input: &str) {
    if let Some(id) = accepted("OrgId::parse", OrgId::parse(input)) {
        assert_eq!(OrgId::parse(&id.to_string()).ok(), Some(id));
    }
    if let Some(id) = accepted("UserId::parse", UserId::parse(input)) {
        assert_eq!(UserId::parse(&id.to_string()).ok(), Some(id));
    }
}

fn enums(input: &str) {
    if let Some(limit_type) = accepted("LimitType::parse", LimitType::parse(input)) {
        let again = LimitType::parse(&limit_type.to_string()).ok();
        assert_eq!(again.as_ref(), Some(&limit_type));
    }
    if let Some(period) = accepted("Period::parse", Period::parse(input)) {
        assert_eq!(Period::parse(&period.to_string()).ok(), Some(period));
    }
    if let Some(mode) = accepted("LimitMode::parse", LimitMode::parse(input)) {
        assert_eq!(LimitMode::parse(mode.as_str()).ok(), Some(mode));
    }
    if let Some(role) = accepted("Role::parse", Role::parse(input)) {
        assert_eq!(Role::parse(&role.to_string()).ok(), Some(role));
    }
}

fn organization(name: &str, slug: &str, timezone: &str) {
    let known_good = NewOrganization::new("Acme", "acme").expect("a valid organization");
    accepted("NewOrganization::timezone", known_good.timezone(timezone));
    accepted("NewOrganization::new", NewOrganization::new(name, "acme"));
    accepted("NewOrganization::new", NewOrganization::new("Acme", slug));
    accepted(
        "NewOrganization::new(..).timezone",
        NewOrganization::new(name, slug).and_then(|org| org.timezone(timezone)),
    );
}

fn limit(limit_type: &str) {
    let known_type = LimitType::parse(limit_type).is_ok();
    for value in limit_values() {
        let made = accepted(
            "NewLimit::from_limit_type",
            NewLimit::from_limit_type(limit_type, value),
        );
        if known_type {
            assert_eq!(
                made.is_some(),
                valid_limit(value),
                "NewLimit::from_limit_type({limit_type:?}, {value})"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let input = input.as_ref();

    names(input);
    ids(input);
    enums(input);
    limit(input);
    accepted("PriceTable::from_json", PriceTable::from_json(input));
    organization(input, input, input);

    let mut parts = input.splitn(3, '\n');
    let (first, second, third) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !second.is_empty() || !third.is_empty() {
        organization(first, second, third);
        limit(first);
    }
});
