//! The tenancy and organization a run creates.

use std::sync::Arc;

use chrono::TimeDelta;

use super::{Checked, Setup, ensure, failed};
use crate::clock::FakeClock;
use crate::ids::{OrgId, UserId};
use crate::limits::{Limit, NewLimit};
use crate::model::{NewOrganization, PlatformOperator, Role, TenantContext};
use crate::store::DynStore;
use crate::tenancy::Tenancy;

/// The tenancy and organization of a run, as created.
pub(super) struct World {
    pub(super) tenancy: Tenancy,
    pub(super) ttl: TimeDelta,
    pub(super) org: OrgId,
    pub(super) users: Vec<TenantContext>,
    pub(super) limits: Vec<Limit>,
}

impl World {
    pub(super) async fn create(
        store: Arc<DynStore>,
        clock: FakeClock,
        setup: &Setup,
    ) -> Checked<World> {
        let ttl = TimeDelta::from_std(setup.reservation_ttl).map_err(|e| e.to_string())?;
        let tenancy = Tenancy::builder()
            .shared_store(store)
            .clock(clock)
            .reservation_ttl(setup.reservation_ttl)
            .build()
            .map_err(|e| failed("building the tenancy", &e))?;
        ensure(setup.users > 0, || "a run needs a user".into())?;
        let owner = UserId::new_v7();
        let slug = format!("model-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let org = NewOrganization::new("Reservation model", &slug)
            .and_then(|o| o.timezone(setup.zone.name()))
            .map_err(|e| failed("NewOrganization", &e))?;
        let org = tenancy.create_organization(owner, org).await;
        let org = org.map_err(|e| failed("create_organization", &e))?.id;
        let as_owner = tenancy.context(owner, org).await;
        let as_owner = as_owner.map_err(|e| failed("the owner's context", &e))?;
        let mut users = vec![as_owner.clone()];
        for _ in 1..setup.users {
            let user = UserId::new_v7();
            let added = tenancy.add_member(&as_owner, user, Role::Member).await;
            added.map_err(|e| failed("add_member", &e))?;
            let ctx = tenancy.context(user, org).await;
            users.push(ctx.map_err(|e| failed("a member's context", &e))?);
        }
        let operator = PlatformOperator::new("reservation-model");
        let mut limits = Vec::new();
        for spec in &setup.limits {
            let new = NewLimit::new(setup.metric.clone(), spec.period, spec.value);
            let mut new = new.map_err(|e| failed(&format!("the limit {spec}"), &e))?;
            if let Some(user) = spec.user {
                let ctx = users.get(user);
                let ctx = ctx.ok_or_else(|| format!("the limit {spec}: no user {user}"))?;
                new = new.for_user(ctx.user());
            }
            let set = tenancy.operator(&operator).set_limit(org, new).await;
            limits.push(set.map_err(|e| failed(&format!("set_limit({spec})"), &e))?);
        }
        Ok(World {
            tenancy,
            ttl,
            org,
            users,
            limits,
        })
    }
}
