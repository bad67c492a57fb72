//! Limits: what is capped, for whom, over which period, and how strictly.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, quoted};
use crate::ids::{LimitId, MetricKey, OrgId, UserId};
use crate::limits::period::Period;

/// The largest amount, limit or quantity accepted: 10^18. Far beyond any
/// real token count or budget, and far enough below `Decimal`'s range
/// (about 7.9 × 10^28) that counters summing many of them cannot overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0);

/// The smallest limit value above zero: 0.000001 (a millionth of a token,
/// or of a dollar). Finer limits are refused, so that percentages of a
/// limit stay meaningful; zero is a valid limit (nothing may be used).
pub const MIN_NONZERO_LIMIT: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

/// Checks that `amount` is non-negative and at most [`MAX_AMOUNT`];
/// otherwise `InvalidInput` naming `field`.
pub(crate) fn validate_amount(field: &'static str, amount: Decimal) -> Result<Decimal> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(Error::invalid_input(
            field,
            format_args!("{amount} is negative; amounts must be zero or more"),
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(Error::invalid_input(
            field,
            format_args!("{amount} exceeds the largest accepted amount, {MAX_AMOUNT}"),
        ));
    }
    Ok(amount.normalize())
}

/// Checks a limit's value: an amount ([`validate_amount`]) that is zero or
/// at least [`MIN_NONZERO_LIMIT`]; otherwise `InvalidInput` naming
/// `limit_value`.
pub(crate) fn validate_limit_value(value: Decimal) -> Result<Decimal> {
    let value = validate_amount("limit_value", value)?;
    if !value.is_zero() && value < MIN_NONZERO_LIMIT {
        return Err(Error::invalid_input(
            "limit_value",
            format_args!("{value} is below the smallest limit above zero, {MIN_NONZERO_LIMIT}"),
        ));
    }
    Ok(value)
}

/// Whom a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "user_id", rename_all = "snake_case")]
pub enum LimitScope {
    /// The whole organization: all its users' usage together
    /// (`usage_limits.user_id` is null).
    Organization,
    /// One user's usage within the organization.
    User(UserId),
}

impl LimitScope {
    /// The user, for a per-user scope.
    pub fn user(&self) -> Option<UserId> {
        match self {
            LimitScope::Organization => None,
            LimitScope::User(user) => Some(*user),
        }
    }

    /// Whether a row with this scope applies to `user`: an org-wide row to
    /// every user, a per-user row to its user only.
    pub fn applies_to(&self, user: UserId) -> bool {
        self.user().is_none_or(|u| u == user)
    }
}

impl From<Option<UserId>> for LimitScope {
    fn from(user: Option<UserId>) -> Self {
        user.map_or(LimitScope::Organization, LimitScope::User)
    }
}

impl fmt::Display for LimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitScope::Organization => f.write_str("org-wide"),
            LimitScope::User(user) => write!(f, "user {user}"),
        }
    }
}

/// What happens when usage would pass a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitMode {
    /// Deny what would pass the limit.
    #[default]
    Hard,
    /// Allow it, and raise alerts.
    Soft,
}

impl LimitMode {
    /// `"hard"` or `"soft"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Hard => "hard",
            LimitMode::Soft => "soft",
        }
    }

    /// Parses `"hard"` or `"soft"`; else `InvalidInput` naming `mode`.
    pub fn parse(input: &str) -> Result<LimitMode> {
        match input {
            "hard" => Ok(LimitMode::Hard),
            "soft" => Ok(LimitMode::Soft),
            _ => Err(Error::invalid_input(
                "mode",
                format_args!("{} is not a limit mode; use hard or soft", quoted(input)),
            )),
        }
    }
}

/// The short metric names `limit_type` strings may use, and the metric each
/// stands for. The SQL trigger that derives `usage_limits.metric` from
/// `limit_type` spells the same pairs; a test compares the two.
pub const LIMIT_TYPE_ALIASES: [(&str, MetricKey); 2] = [
    ("cost", MetricKey::COST_USD),
    ("ads", MetricKey::ADS_CREATED),
];

/// A metric and a period: what the plan's `limit_type` strings name.
///
/// `monthly_tokens`, `monthly_cost` (metric `cost_usd`), `daily_ads`
/// (metric `ads_created`), and in general `daily_<metric>` or
/// `monthly_<metric>`.
///
/// ```
/// use tenancy::Period;
/// use tenancy::limits::LimitType;
/// let t = LimitType::parse("monthly_cost")?;
/// assert_eq!((t.metric.as_str(), t.period), ("cost_usd", Period::Monthly));
/// assert_eq!(LimitType::parse("daily_ads")?.metric.as_str(), "ads_created");
/// assert_eq!(LimitType::parse("daily_images")?.to_string(), "daily_images");
/// assert!(LimitType::parse("weekly_tokens").is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitType {
    /// The metric capped.
    pub metric: MetricKey,
    /// The period it is counted over.
    pub period: Period,
}

impl LimitType {
    /// Parses a `limit_type` string; an unknown period prefix or invalid
    /// metric is `InvalidInput` naming `limit_type`.
    pub fn parse(input: &str) -> Result<LimitType> {
        let (period, metric) = input.split_once('_').ok_or_else(|| {
            Error::invalid_input(
                "limit_type",
                format_args!("{} is not <daily|monthly>_<metric>", quoted(input)),
            )
        })?;
        let period = Period::parse(period).map_err(|_| {
            Error::invalid_input(
                "limit_type",
                format_args!("{} must start with daily_ or monthly_", quoted(input)),
            )
        })?;
        let alias = LIMIT_TYPE_ALIASES
            .into_iter()
            .find(|(short, _)| *short == metric);
        let metric = match alias {
            Some((_, metric)) => metric,
            None => MetricKey::parse(metric).map_err(|e| {
                Error::invalid_input(
                    "limit_type",
                    format_args!("{}: {}", quoted(input), e.message()),
                )
            })?,
        };
        Ok(LimitType { metric, period })
    }
}

impl fmt::Display for LimitType {
    /// The canonical `<period>_<metric>` form (`monthly_cost_usd`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.period, self.metric)
    }
}

/// A limit on one metric over one period, for an organization or one of its
/// users. At most one limit exists per (org, scope, metric, period);
/// setting another replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Its id.
    pub id: LimitId,
    /// The organization.
    pub org: OrgId,
    /// Org-wide or one user.
    pub scope: LimitScope,
    /// The metric capped.
    pub metric: MetricKey,
    /// The period counted over.
    pub period: Period,
    /// The cap, non-negative.
    pub value: Decimal,
    /// Hard (deny) or soft (alert only).
    pub mode: LimitMode,
    /// When it was first set.
    pub created_at: DateTime<Utc>,
    /// When it lapses and the organization's plan (or no limit, without
    /// one) applies again; `None`: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A limit to set. Built from a metric and period or a `limit_type` string.
///
/// ```
/// use rust_decimal_macros::dec;
/// use tenancy::{NewLimit, Period, MetricKey};
/// let org_wide = NewLimit::new(MetricKey::TOKENS, Period::Monthly, dec!(1000000))?;
/// let soft_cost = NewLimit::from_limit_type("monthly_cost", dec!(50))?.soft();
/// assert!(NewLimit::from_limit_type("daily_ads", dec!(-1)).is_err());
/// # Ok::<(), tenancy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLimit {
    pub(crate) scope: LimitScope,
    pub(crate) metric: MetricKey,
    pub(crate) period: Period,
    pub(crate) value: Decimal,
    pub(crate) mode: LimitMode,
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

impl NewLimit {
    /// A hard, org-wide limit of `value` on `metric` per `period`. A
    /// negative value, one above [`MAX_AMOUNT`], or one above zero but below
    /// [`MIN_NONZERO_LIMIT`] is `InvalidInput` naming `limit_value`.
    pub fn new(metric: MetricKey, period: Period, value: Decimal) -> Result<Self> {
        Ok(NewLimit {
            scope: LimitScope::Organization,
            metric,
            period,
            value: validate_limit_value(value)?,
            mode: LimitMode::Hard,
            expires_at: None,
        })
    }

    /// From the plan's `limit_type` string and a value.
    pub fn from_limit_type(limit_type: &str, value: Decimal) -> Result<Self> {
        let LimitType { metric, period } = LimitType::parse(limit_type)?;
        NewLimit::new(metric, period, value)
    }

    /// Applies the limit to one user instead of the whole organization.
    pub fn for_user(mut self, user: UserId) -> Self {
        self.scope = LimitScope::User(user);
        self
    }

    /// Makes it a soft limit: usage past it is allowed and raises alerts.
    pub fn soft(mut self) -> Self {
        self.mode = LimitMode::Soft;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: LimitMode) -> Self {
        self.mode = mode;
        self
    }

    /// Makes it an override that lapses at `at`: from then on it counts as
    /// absent and the organization's plan (or no limit) applies again.
    pub fn until(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn max_amount_is_ten_to_the_eighteenth() {
        assert_eq!(
            MAX_AMOUNT,
            Decimal::from_str("1000000000000000000").unwrap()
        );
    }

    #[test]
    fn amounts_are_validated() {
        assert!(validate_amount("amount", Decimal::ZERO).is_ok());
        let err = validate_amount("amount", Decimal::NEGATIVE_ONE).unwrap_err();
        assert_eq!(err.field(), Some("amount"));
        let too_big = MAX_AMOUNT + Decimal::ONE;
        assert_eq!(
            validate_amount("limit_value", too_big).unwrap_err().field(),
            Some("limit_value")
        );
    }

    #[test]
    fn limit_values_are_zero_or_at_least_a_millionth() {
        let tiny = Decimal::new(1, 28);
        let err = NewLimit::new(MetricKey::TOKENS, Period::Daily, tiny).unwrap_err();
        assert_eq!(err.field(), Some("limit_value"));
        assert!(NewLimit::new(MetricKey::TOKENS, Period::Daily, MIN_NONZERO_LIMIT).is_ok());
        assert!(NewLimit::new(MetricKey::TOKENS, Period::Daily, Decimal::ZERO).is_ok());
    }

    #[test]
    fn limit_types() {
        let t = LimitType::parse("monthly_tokens").unwrap();
        assert_eq!((t.metric.as_str(), t.period), ("tokens", Period::Monthly));
        assert_eq!(
            LimitType::parse("daily_cost").unwrap().to_string(),
            "daily_cost_usd"
        );
        assert_eq!(
            LimitType::parse("daily_cost_usd").unwrap(),
            LimitType::parse("daily_cost").unwrap()
        );
        for bad in [
            "tokens",
            "hourly_tokens",
            "daily_",
            "daily_Tokens",
            "monthly",
        ] {
            assert_eq!(
                LimitType::parse(bad).unwrap_err().field(),
                Some("limit_type"),
                "{bad}"
            );
        }
    }
}
