//! Plain data: organizations, members, roles, contexts, features, usage
//! events and prices, with the pure rules that belong to them. Nothing here
//! does I/O.

pub mod audit;
pub mod context;
pub mod domain;
pub mod feature;
pub mod invitation;
mod json;
pub mod org;
pub mod plan;
pub mod price;
pub mod profile;
pub mod report;
pub mod role;
pub mod usage;

pub use context::TenantContext;
pub use feature::{Feature, FeatureChange, MAX_FEATURE_CONFIG_BYTES};
pub use org::{
    MAX_ORG_NAME_CHARS, Membership, NewOrganization, OrgMembership, Organization,
    default_membership, parse_timezone,
};
pub use price::{ClassRates, MAX_PRICE_PER_MILLION, ModelPrice, PriceTable, Priced, Unpriced};
pub use profile::UserProfile;
pub use role::{Action, MembershipChange, PlatformOperator, Role};
pub use usage::{
    CostSource, MAX_EVENT_AGE, MAX_EVENT_LEAD, MAX_LABEL_CHARS, MAX_METADATA_BYTES, TokenCounts,
    UsageEvent, UsageRecord,
};
