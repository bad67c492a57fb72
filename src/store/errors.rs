//! Errors that every backend words the same way.

use crate::error::Error;
use crate::ids::{OrgId, UserId};

/// The `NotFound` error for a membership that does not exist.
pub(crate) fn not_a_member(org: OrgId, user: UserId) -> Error {
    Error::not_found(format!("user {user} is not a member of organization {org}"))
}

/// The `NotFound` error for an organization that does not exist, shared by
/// the stores and the facade.
pub(crate) fn org_not_found(org: OrgId) -> Error {
    Error::not_found(format!("organization {org} does not exist"))
}
