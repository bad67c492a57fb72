//! Every string parser and validating constructor, fed the same text.
//!
//! Single-argument parsers get the whole input. Constructors with several
//! arguments get it whole in each position, and also split at newlines
//! (`name\nslug\ntimezone`, `limit_type\n…`). An accepted value must survive
//! a round trip through its text form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use tenancy::{
    FeatureKey, LimitMode, LimitType, MetricKey, NewLimit, NewOrganization, OrgId, Period,
    PriceTable, Role, Slug, UserId,
};
use tenancy_fuzz::{accepted, text};

/// Limit values at and around the edges `NewLimit` must police.
fn limit_values() -> [Decimal; 8] {
    let max_amount = Decimal::from(1_000_000_000_000_000_000_u64);
    [
        Decimal::ZERO,
        -Decimal::ZERO,
        Decimal::ONE,
        Decimal::NEGATIVE_ONE,
        max_amount,
        max_amount + Decimal::new(1, 10),
        Decimal::MAX,
        Decimal::MIN,
    ]
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
    for value in limit_values() {
        accepted(
            "NewLimit::from_limit_type",
            NewLimit::from_limit_type(limit_type, value),
        );
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
