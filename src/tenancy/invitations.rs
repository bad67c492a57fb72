//! Inviting people: create, list, revoke, resend and accept invitations.
