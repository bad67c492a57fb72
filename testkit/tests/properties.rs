//! Property tests of the pure rules, through the public API: parsers accept
//! exactly what their rules say, periods tile time in every zone, and event
//! validation agrees with the amounts it derives.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rust_decimal::Decimal;
use tenancy::limits::MAX_AMOUNT;
use tenancy::limits::PeriodKey;
use tenancy::{FeatureKey, MetricKey, OrgId, Period, Slug, UsageEvent};

/// The slug rule, written out independently of the crate: 1 to 63 bytes,
/// runs of lowercase ASCII letters and digits joined by single hyphens
/// (`organizations_slug_check`).
fn is_slug(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.split('-').all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Strings on both sides of the slug rule: any text, the slug alphabet
/// with hyphens anywhere, well-formed slugs from 1 to 77 bytes, and
/// well-formed slugs of 60 to 66 bytes, around the 63-byte limit.
fn slug_candidates() -> impl Strategy<Value = String> {
    let well_formed = "[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,5}";
    let around_the_limit = (60usize..=66, well_formed).prop_map(|(len, mut slug)| {
        while slug.len() < len {
            slug.push('a');
        }
        slug.truncate(len);
        if slug.ends_with('-') {
            slug.pop();
            slug.push('0');
        }
        slug
    });
    prop_oneof![
        "\\PC{0,80}",
        "[a-z0-9-]{0,70}",
        well_formed,
        around_the_limit,
    ]
}

#[test]
fn slugs_are_refused_from_64_bytes() {
    for (slug, ok) in [
        ("a".repeat(63), true),
        ("a".repeat(64), false),
        (format!("{}-{}", "a".repeat(31), "9".repeat(31)), true),
        (format!("{}-{}", "a".repeat(32), "9".repeat(31)), false),
    ] {
        let parsed = Slug::parse(&slug);
        assert_eq!(parsed.is_ok(), ok, "{} bytes: {parsed:?}", slug.len());
        if let Err(err) = parsed {
            assert_eq!(err.field(), Some("slug"));
        }
    }
}

proptest! {
    #[test]
    fn slug_parse_accepts_exactly_the_rule(s in slug_candidates()) {
        let parsed = Slug::parse(&s);
        prop_assert_eq!(parsed.is_ok(), is_slug(&s), "{:?}: {:?}", s, parsed);
        match parsed {
            Ok(slug) => prop_assert_eq!(slug.as_str(), s.as_str()),
            Err(err) => prop_assert_eq!(err.field(), Some("slug")),
        }
    }

    #[test]
    fn key_parsers_refuse_with_a_field(s in "\\PC{0,80}") {
        for err in [FeatureKey::parse(&s).err(), MetricKey::parse(&s).err(), OrgId::parse(&s).err()]
            .into_iter()
            .flatten()
        {
            prop_assert!(err.field().is_some(), "{err}");
        }
    }

    #[test]
    fn valid_metric_keys_parse(s in "[a-z][a-z0-9_]{0,62}") {
        let key = MetricKey::parse(&s).unwrap();
        prop_assert_eq!(key.as_str(), s.as_str());
    }

    #[test]
    fn metric_keys_of_64_bytes_or_more_are_refused(s in "[a-z][a-z0-9_]{63,70}") {
        prop_assert!(MetricKey::parse(&s).is_err(), "{} bytes", s.len());
    }
}

const ZONES: [&str; 6] = [
    "UTC",
    "Asia/Tokyo",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

proptest! {
    #[test]
    fn every_instant_lies_inside_its_period(
        secs in 946_684_800i64..4_102_444_800i64,
        zone in 0usize..ZONES.len(),
        monthly in any::<bool>(),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let instant = Utc.timestamp_opt(secs, 0).unwrap();
        let period = if monthly { Period::Monthly } else { Period::Daily };
        let key = PeriodKey::containing(period, instant, tz);
        prop_assert!(key.starts_at(tz) <= instant, "{key} starts after {instant}");
        prop_assert!(instant < key.resets_at(tz), "{key} ends before {instant}");
        // The next period starts exactly where this one ends.
        prop_assert_eq!(PeriodKey::containing(period, key.resets_at(tz), tz), key.next());
    }

    /// `validate` (allocation-free, on every `UsageRecorder::record`)
    /// accepts exactly what `amounts` (on every write) accepts, and both
    /// refuse a negative amount and one above `MAX_AMOUNT`.
    #[test]
    fn validate_agrees_with_amounts(
        // Mostly in range, so that cost and quantities get checked at all.
        input in prop_oneof![0u64..100_000, any::<u64>()],
        output in prop_oneof![0u64..100_000, any::<u64>()],
        cost in proptest::option::of((mantissa(), 0u32..3)),
        quantities in proptest::collection::vec((0usize..3, mantissa(), 0u32..3), 0..4),
    ) {
        let names = ["tokens", "cost_usd", "images"];
        let mut e = UsageEvent::new(OrgId::new_v7()).tokens(input, 0, output);
        if let Some((mantissa, scale)) = cost {
            e = e.cost_usd(Decimal::new(mantissa, scale));
        }
        for (name, mantissa, scale) in quantities {
            e = e.quantity(MetricKey::parse(names[name]).unwrap(), Decimal::new(mantissa, scale));
        }
        prop_assert_eq!(e.validate().is_ok(), e.amounts().is_ok(), "{:?}", e);
        // What the event holds (a repeated quantity is summed), each an
        // amount on its own.
        let held = e.cost_usd.iter().chain(e.quantities.values());
        if held.clone().any(|a| *a < Decimal::ZERO || *a > MAX_AMOUNT) {
            prop_assert!(e.validate().is_err(), "{:?}", e);
        }
    }
}

/// The edges the property above draws around, fixed: a cost of exactly
/// `MAX_AMOUNT` is an amount, a cent more is refused naming `cost_usd`.
#[test]
fn a_cost_at_the_largest_amount_is_accepted_and_a_cent_more_refused() {
    let event = |cost| {
        UsageEvent::new(OrgId::new_v7())
            .tokens(1, 0, 1)
            .cost_usd(cost)
    };
    assert!(event(MAX_AMOUNT).validate().is_ok());
    assert!(event(MAX_AMOUNT).amounts().is_ok());
    let over = event(MAX_AMOUNT + Decimal::new(1, 2))
        .validate()
        .unwrap_err();
    assert_eq!(over.field(), Some("cost_usd"), "{over}");
}

/// Mantissas for amounts at scales 0 to 2: small ones either side of zero,
/// ones around `MAX_AMOUNT` (10^18 at scale 0), and any up to `i64::MAX`,
/// which straddles the largest amount.
fn mantissa() -> impl Strategy<Value = i64> {
    const MAX: i64 = 1_000_000_000_000_000_000;
    prop_oneof![-3i64..=3, MAX - 2..=MAX + 2, -3i64..i64::MAX]
}
