//! Invalid input is `InvalidInput` naming the field (its message starting
//! with the field), never a panic, and nothing is half-written.

use rust_decimal::Decimal;
use tenancy::limits::{MAX_AMOUNT, MIN_NONZERO_LIMIT};
use tenancy::{
    Error, ErrorKind, MetricKey, NewLimit, NewOrganization, Period, Result, Role, UsageEvent,
};

use crate::scene::{dec, scene};

/// The field an `InvalidInput` error names, after checking that its
/// message starts with `"<field>: "`.
fn field<T>(result: Result<T>) -> Option<&'static str> {
    let e: Error = result.map(drop).expect_err("invalid");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let field = e.field().expect("an InvalidInput error names its field");
    assert!(
        e.message().starts_with(&format!("{field}: ")),
        "the message starts with the field: {:?}",
        e.message()
    );
    Some(field)
}

/// The facade's own calls: limits, reservations and usage.
#[tokio::test]
async fn bad_amounts_metrics_and_events_are_invalid_input() {
    let s = scene().await;
    let t = &s.tenancy;
    let ctx = &s.owner_ctx;
    assert_eq!(
        field(t.check_limit(ctx, "tokens", dec(-1)).await),
        Some("amount")
    );
    assert_eq!(
        field(t.check_limit(ctx, "Tokens!", dec(1)).await),
        Some("metric")
    );
    assert_eq!(
        field(t.reserve(ctx, "tokens", dec(-5)).await),
        Some("estimate")
    );
    let huge = MAX_AMOUNT * dec(10);
    assert_eq!(
        field(t.reserve(ctx, "tokens", huge).await),
        Some("estimate")
    );
    let negative = UsageEvent::new(s.org).quantity(MetricKey::ADS_CREATED, dec(-1));
    assert_eq!(
        field(t.service().record_usage(negative).await),
        Some("quantity")
    );
    let overflow = UsageEvent::new(s.org).quantity(MetricKey::ADS_CREATED, huge);
    assert_eq!(
        field(t.service().record_usage(overflow).await),
        Some("quantity")
    );
    // Nothing was half-written.
    assert!(t.usage_summary(ctx).await.unwrap().is_empty());
}

/// The parsers and constructors the facade takes its input from.
#[test]
fn bad_limits_names_and_settings_are_invalid_input() {
    assert_eq!(
        field(NewLimit::new(MetricKey::TOKENS, Period::Daily, dec(-1))),
        Some("limit_value")
    );
    assert_eq!(
        field(NewLimit::from_limit_type("weekly_tokens", dec(1))),
        Some("limit_type")
    );
    assert_eq!(field(Period::parse("hourly")), Some("period"));
    assert_eq!(field(Role::parse("root")), Some("role"));
    assert_eq!(field(NewOrganization::new("Acme", "-acme")), Some("slug"));
    assert_eq!(
        field(NewOrganization::new("Acme", "acme").and_then(|n| n.timezone("Mars/Base"))),
        Some("timezone")
    );
}

/// A limit above zero but below a millionth is refused (percentages of it
/// would mean nothing); zero and the smallest step are fine.
#[test]
fn limit_values_below_a_millionth_are_refused() {
    let limit = |value: Decimal| NewLimit::new(MetricKey::COST_USD, Period::Monthly, value);
    for tiny in [Decimal::new(1, 7), Decimal::new(9, 7), Decimal::new(1, 28)] {
        assert_eq!(field(limit(tiny)), Some("limit_value"), "{tiny}");
    }
    assert!(limit(Decimal::ZERO).is_ok());
    assert!(limit(MIN_NONZERO_LIMIT).is_ok());
    assert!(limit(Decimal::new(15, 7)).is_ok(), "above a millionth");
}

/// NUL characters cannot be stored: refused in labels, metadata and
/// feature configs before anything is written.
#[tokio::test]
async fn nul_characters_are_refused() {
    let s = scene().await;
    let event = || UsageEvent::new(s.org).user(s.owner).tokens(1, 0, 0);
    let cases = [
        ("provider", event().ai_call("open\0ai", "gpt-4o", "ad_copy")),
        ("model", event().ai_call("openai", "gpt\0", "ad_copy")),
        ("operation", event().ai_call("openai", "gpt-4o", "ad\0copy")),
        (
            "metadata",
            event().metadata(serde_json::json!({"brand": "a\u{0}b"})),
        ),
        (
            "metadata",
            event().metadata(serde_json::json!({"key\u{0}": 1})),
        ),
    ];
    for (name, bad) in cases {
        assert_eq!(
            field(s.tenancy.service().record_usage(bad).await),
            Some(name)
        );
    }
    let config = serde_json::json!({"voices": ["ava\u{0}"]});
    assert_eq!(
        field(
            s.op()
                .set_feature_config(s.org, "veo_avatars", config)
                .await
        ),
        Some("config")
    );
    assert!(
        s.tenancy
            .usage_summary(&s.owner_ctx)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.op().features(s.org).await.unwrap().is_empty());
}
