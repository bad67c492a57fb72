//! Invitations: to an email or by a shareable link, naming a role.
