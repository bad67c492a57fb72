//! Property tests of the pure rules, through the public API: parsers accept
//! exactly what their rules say, periods tile time in every zone, and event
//! validation agrees with the amounts it derives.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rust_decimal::Decimal;
use tenancy::{FeatureKey, MetricKey, OrgId, Period, PeriodKey, Slug, UsageEvent};

proptest! {
    #[test]
    fn slug_parse_accepts_only_valid_slugs(s in "\\PC{0,80}") {
        if let Ok(slug) = Slug::parse(&s) {
            prop_assert!(!slug.as_str().is_empty() && slug.as_str().len() <= 63);
            prop_assert!(!slug.as_str().starts_with('-') && !slug.as_str().ends_with('-'));
            prop_assert!(!slug.as_str().contains("--"));
        }
    }

    #[test]
    fn generated_valid_slugs_parse(s in "[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,4}") {
        prop_assert!(Slug::parse(&s).is_ok());
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
    /// accepts exactly what `amounts` (on every write) accepts.
    #[test]
    fn validate_agrees_with_amounts(
        input in any::<u64>(),
        output in any::<u64>(),
        cost in proptest::option::of((-3i64..i64::MAX, 0u32..3)),
        quantities in proptest::collection::vec((0usize..3, -3i64..i64::MAX, 0u32..3), 0..4),
    ) {
        // Mantissas up to i64::MAX at scales 0..3 straddle the largest amount.
        let names = ["tokens", "cost_usd", "images"];
        let mut e = UsageEvent::new(OrgId::new_v7()).tokens(input, 0, output);
        if let Some((mantissa, scale)) = cost {
            e = e.cost_usd(Decimal::new(mantissa, scale));
        }
        for (name, mantissa, scale) in quantities {
            e = e.quantity(MetricKey::parse(names[name]).unwrap(), Decimal::new(mantissa, scale));
        }
        prop_assert_eq!(e.validate().is_ok(), e.amounts().is_ok(), "{:?}", e);
    }
}
