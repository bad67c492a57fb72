//! `RateLimitStore` over SQL: the configuration in
//! `public.usage_rate_limits`, the state in `tenancy.usage_rate_state`,
//! each decision one call of `tenancy_acquire_rate`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::args::Deleted;
use super::args::OrgArg;
use super::{Idempotent, Sql, SqlTransport, org_missing};
use crate::error::Result;
use crate::ids::{LimitId, MetricKey, OrgId, UserId};
use crate::limits::LimitMode;
use crate::limits::rate::{
    RateAction, RateLimit, RateRequest, RateResult, RateState, RateWindow, micros_of,
};

/// Arguments of `tenancy_put_rate_limit`; `user_id` is left out for an
/// org-wide limit.
#[derive(Debug, Serialize)]
struct PutRateLimitArgs<'a> {
    limit_id: LimitId,
    org_id: OrgId,
    metric: &'a MetricKey,
    rate_window: RateWindow,
    limit_value: Decimal,
    burst: Decimal,
    mode: LimitMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    created_at: DateTime<Utc>,
    /// When the row lapses; left out: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

/// Arguments of `tenancy_delete_rate_limit`.
#[derive(Debug, Serialize)]
struct RateLimitIdArgs {
    org_id: OrgId,
    limit_id: LimitId,
}

/// Arguments of `tenancy_acquire_rate`.
#[derive(Debug, Serialize)]
struct AcquireRateArgs<'a> {
    org_id: OrgId,
    user_id: UserId,
    charges: &'a [(MetricKey, Decimal)],
    now_us: i64,
    action: RateAction,
}

impl<T: SqlTransport + ?Sized> Sql<'_, T> {
    pub(crate) async fn rate_limit_states(&self, org: OrgId) -> Result<Vec<RateState>> {
        self.rpc(
            "tenancy_rate_limits",
            "reading rate limits",
            Idempotent::Yes,
            &OrgArg { org_id: org },
        )
        .await
    }

    pub(crate) async fn put_rate_limit(&self, limit: &RateLimit) -> Result<RateLimit> {
        let args = PutRateLimitArgs {
            limit_id: limit.id,
            org_id: limit.org,
            metric: &limit.metric,
            rate_window: limit.window,
            limit_value: limit.value,
            burst: limit.burst,
            mode: limit.mode,
            user_id: limit.scope.user(),
            created_at: limit.created_at,
            expires_at: limit.expires_at,
        };
        self.rpc(
            "tenancy_put_rate_limit",
            "setting a rate limit",
            Idempotent::Yes,
            &args,
        )
        .await
        .map_err(org_missing(limit.org))
    }

    pub(crate) async fn delete_rate_limit(&self, org: OrgId, id: LimitId) -> Result<bool> {
        let args = RateLimitIdArgs {
            org_id: org,
            limit_id: id,
        };
        let deleted: Deleted = self
            .rpc(
                "tenancy_delete_rate_limit",
                "deleting a rate limit",
                Idempotent::No,
                &args,
            )
            .await?;
        Ok(deleted.deleted)
    }

    pub(crate) async fn acquire_rate(&self, request: &RateRequest) -> Result<RateResult> {
        let args = AcquireRateArgs {
            org_id: request.org,
            user_id: request.user,
            charges: &request.charges,
            now_us: micros_of(request.now),
            action: request.action,
        };
        // A retried acquire could charge twice: it may have landed.
        let idempotent = match request.action {
            RateAction::Check => Idempotent::Yes,
            RateAction::Acquire | RateAction::Refund => Idempotent::No,
        };
        self.rpc(
            "tenancy_acquire_rate",
            "deciding a rate limit",
            idempotent,
            &args,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::*;

    /// A response of `tenancy_rate_limits`, as PostgreSQL returns it.
    const RATE_LIMITS_EXAMPLE: &str = r#"[
  {
    "tat": 1772625660000000,
    "limit": {
      "id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f6",
      "org": "0192f0c4-1111-7c8d-9e0f-a1b2c3d4e5f6",
      "mode": "hard",
      "burst": "600",
      "scope": {"scope": "organization"},
      "value": "600",
      "metric": "requests",
      "window": "minute",
      "created_at": "2026-03-04T12:00:00+00:00",
      "expires_at": null
    }
  },
  {
    "tat": null,
    "limit": {
      "id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f7",
      "org": "0192f0c4-1111-7c8d-9e0f-a1b2c3d4e5f6",
      "mode": "soft",
      "burst": "20000",
      "scope": {"scope": "user", "user_id": "0192f0c4-2222-7c8d-9e0f-a1b2c3d4e5f6"},
      "value": "100000",
      "metric": "tokens",
      "window": "hour",
      "created_at": "2026-03-04T12:00:01+00:00",
      "expires_at": null
    }
  }
]"#;

    /// A response of `tenancy_acquire_rate`, as PostgreSQL returns it.
    const ACQUIRE_RATE_EXAMPLE: &str = r#"{
  "granted": false,
  "limits": [
    {
      "tat": 1772625660000000,
      "limit": {
        "id": "0192f0c4-5a6b-7c8d-9e0f-a1b2c3d4e5f6",
        "org": "0192f0c4-1111-7c8d-9e0f-a1b2c3d4e5f6",
        "mode": "hard",
        "burst": "600",
        "scope": {"scope": "organization"},
        "value": "600",
        "metric": "requests",
        "window": "minute",
        "created_at": "2026-03-04T12:00:00+00:00",
      "expires_at": null
      }
    }
  ]
}"#;

    /// The keys of every object in `value`, all the way down, with their
    /// JSON types: what the SQL and the serde types must agree on.
    fn shape(value: &Value) -> Value {
        match value {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), shape(v))).collect(),
            Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
            Value::String(_) => Value::from("string"),
            Value::Number(_) => Value::from("number"),
            Value::Bool(_) => Value::from("bool"),
            Value::Null => Value::Null,
        }
    }

    fn round_trips<T: DeserializeOwned + Serialize>(name: &str, example: &str) -> T {
        let sample: Value = serde_json::from_str(example).unwrap();
        let typed: T = serde_json::from_value(sample.clone())
            .unwrap_or_else(|e| panic!("{name} does not read into its type: {e}"));
        let written = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            shape(&written),
            shape(&sample),
            "{name}: the type and the SQL disagree"
        );
        typed
    }

    #[test]
    fn rate_limit_examples_have_the_shapes_of_their_types() {
        let states: Vec<RateState> = round_trips("tenancy_rate_limits", RATE_LIMITS_EXAMPLE);
        assert_eq!(states.len(), 2);
        assert!(states[1].limit.scope.user().is_some());
        assert_eq!(states[1].tat, None);
        let result: RateResult = round_trips("tenancy_acquire_rate", ACQUIRE_RATE_EXAMPLE);
        assert!(!result.granted);
        assert_eq!(result.limits[0].limit.window, RateWindow::Minute);
    }

    /// The arguments' names are the SQL function's parameters.
    #[test]
    fn acquire_arguments_are_named_as_in_sql() {
        let args = AcquireRateArgs {
            org_id: OrgId::new_v7(),
            user_id: UserId::new_v7(),
            charges: &[(MetricKey::TOKENS, Decimal::ONE)],
            now_us: 7,
            action: RateAction::Acquire,
        };
        let json = serde_json::to_value(&args).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["action", "charges", "now_us", "org_id", "user_id"]);
        assert_eq!(json["action"], "acquire");
        assert_eq!(json["charges"], serde_json::json!([["tokens", "1"]]));
    }
}
