//! An organization with history, for benches: what a month of use leaves
//! behind, so a figure is not measured on an empty org.
//!
//! [`OrgHistory::seed`] creates, through the public API only (so it works
//! on every store):
//!
//! - an organization in Europe/Berlin with [`OrgHistory::members`] members
//!   (the owner, then admins, members and viewers in turn);
//! - [`LIMITS`] limits of different metrics, periods and modes, one of them
//!   the owner's own; their values leave room for a bench's own spending,
//!   so nothing is denied during a run;
//! - [`OrgHistory::days`] days of usage events ending at `now`, each member
//!   [`OrgHistory::events_per_member_day`] a day: AI calls on two models
//!   (tokens, and their cost from [`PriceTable::shipped`]), a third of them
//!   with images and a fifth with API calls; recorded with
//!   `record_usage_batch` in batches of [`BATCH`], every event inside the
//!   accepted window ([`MAX_EVENT_AGE`]), each member's first call of the
//!   last day at `now` (so the current day and month have usage).
//!
//! The defaults (10 members, 30 days, 10 events a member a day: 3 000
//! events) seed a `MemoryStore` in milliseconds and the PostgREST stand-in
//! in well under a second.

use chrono::{DateTime, TimeDelta, Utc};
use tenancy::model::MAX_EVENT_AGE;
use tenancy::model::PriceTable;
use tenancy::{
    MetricKey, NewLimit, NewOrganization, OrgId, Period, PlatformOperator, Role, Tenancy,
    TenantContext, UsageEvent, UserId,
};

/// Events per `record_usage_batch` call while seeding.
pub const BATCH: usize = 500;

/// How many limits [`OrgHistory::seed`] sets.
pub const LIMITS: usize = 7;

/// The shape of the history to seed. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgHistory {
    /// Members, the owner included (at least 1).
    pub members: usize,
    /// Days of events, today included (1 to 30: the oldest event must stay
    /// within [`MAX_EVENT_AGE`]).
    pub days: i64,
    /// Events each member records a day.
    pub events_per_member_day: usize,
}

impl Default for OrgHistory {
    fn default() -> Self {
        OrgHistory {
            members: 10,
            days: 30,
            events_per_member_day: 10,
        }
    }
}

/// What [`OrgHistory::seed`] made.
#[derive(Debug, Clone)]
pub struct SeededOrg {
    /// The organization.
    pub org: OrgId,
    /// Its owner (also `members[0]`).
    pub owner: UserId,
    /// Every member, the owner first.
    pub members: Vec<UserId>,
    /// The owner's context.
    pub owner_ctx: TenantContext,
    /// Events recorded.
    pub events: usize,
}

fn metric(name: &str) -> MetricKey {
    MetricKey::parse(name).expect("a valid metric key")
}

impl OrgHistory {
    /// How many events [`seed`](Self::seed) records.
    pub fn events(&self) -> usize {
        self.members * self.days as usize * self.events_per_member_day
    }

    /// The events of member `member` (user `user`), `days` days up to
    /// `now`; amounts vary by member, day and call.
    fn events_of(
        &self,
        org: OrgId,
        user: UserId,
        member: usize,
        now: DateTime<Utc>,
    ) -> Vec<UsageEvent> {
        let prices = PriceTable::shipped();
        let mut events = Vec::with_capacity(self.days as usize * self.events_per_member_day);
        for day in 0..self.days {
            let day_start = now - TimeDelta::days(self.days - 1 - day);
            for call in 0..self.events_per_member_day {
                let n = (member * 31 + day as usize * 7 + call * 13) as u64;
                // Spread over the 20 hours up to `day_start`, never after
                // `now`; each member's first call of the last day is at
                // `now`, so the current day and month have usage.
                let minutes = if call == 0 { 0 } else { (n * 97) % (20 * 60) };
                let at = day_start - TimeDelta::minutes(minutes as i64);
                let model = if n.is_multiple_of(4) {
                    "gpt-4o-mini"
                } else {
                    "gpt-4o"
                };
                let (input, cached, output) =
                    (500 + (n * 37) % 2000, (n * 11) % 400, 100 + (n * 53) % 800);
                let cost = prices
                    .cost("openai", model, at, input, cached, output)
                    .expect("a cost that fits")
                    .expect("a shipped price");
                let mut event = UsageEvent::new(org)
                    .user(user)
                    .ai_call("openai", model, "ad_copy")
                    .tokens(input, cached, output)
                    .cost_usd(cost)
                    .at(at);
                if n.is_multiple_of(3) {
                    event = event.quantity(metric("images"), (1 + n as i64 % 4).into());
                }
                if n.is_multiple_of(5) {
                    event = event.quantity(metric("api_calls"), (10 + n as i64 % 15).into());
                }
                events.push(event);
            }
        }
        events
    }

    /// Seeds an organization named `slug` on `tenancy`, with events up to
    /// `now` (the tenancy clock's time). See the module docs.
    pub async fn seed(
        &self,
        tenancy: &Tenancy,
        slug: &str,
        now: DateTime<Utc>,
    ) -> tenancy::Result<SeededOrg> {
        assert!(self.members >= 1, "an org has an owner");
        assert!(
            (1..=30).contains(&self.days) && TimeDelta::days(self.days) < MAX_EVENT_AGE,
            "days must keep every event within MAX_EVENT_AGE"
        );
        let members: Vec<UserId> = (0..self.members).map(|_| UserId::new_v7()).collect();
        let owner = members[0];
        let new = NewOrganization::new("Seeded", slug)?.timezone("Europe/Berlin")?;
        let org = tenancy.create_organization(owner, new).await?.id;
        let owner_ctx = tenancy.context(owner, org).await?;
        for (i, user) in members.iter().enumerate().skip(1) {
            let role = [Role::Admin, Role::Member, Role::Member, Role::Viewer][i % 4];
            tenancy.add_member(&owner_ctx, *user, role).await?;
        }

        let limit =
            |name: &str, period, value: i64| NewLimit::new(metric(name), period, value.into());
        let limits = [
            limit("tokens", Period::Monthly, 50_000_000)?,
            limit("tokens", Period::Daily, 10_000_000)?,
            limit("cost_usd", Period::Monthly, 1_000)?,
            limit("cost_usd", Period::Daily, 50)?.soft(),
            limit("images", Period::Monthly, 20_000)?,
            limit("api_calls", Period::Daily, 10_000)?,
            limit("tokens", Period::Monthly, 20_000_000)?.for_user(owner),
        ];
        debug_assert_eq!(limits.len(), LIMITS);
        let operator = PlatformOperator::new("seed");
        for limit in limits {
            tenancy.operator(&operator).set_limit(org, limit).await?;
        }

        let mut events = Vec::with_capacity(self.events());
        for (member, user) in members.iter().enumerate() {
            events.extend(self.events_of(org, *user, member, now));
        }
        let recorded = events.len();
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let batch: Vec<_> = events.by_ref().take(BATCH).collect();
            tenancy.service().record_usage_batch(batch).await?;
        }
        Ok(SeededOrg {
            org,
            owner,
            members,
            owner_ctx,
            events: recorded,
        })
    }
}
