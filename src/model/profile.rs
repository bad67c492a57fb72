//! Who a user is, for people to read: the display data a
//! [`UserDirectory`](crate::store::UserDirectory) resolves a user id to.

use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// A user's display data: an email and a name where the directory knows
/// them and may show them, `None` otherwise.
///
/// `None` means "not shown": the user has no name, the directory does not
/// know the user, the caller may not learn it, or no directory is
/// configured. Pages fall back to the id then.
///
/// ```
/// use tenancy::{UserId, UserProfile};
///
/// let ada = UserId::new_v7();
/// let profile = UserProfile::new(ada).with_email("ada@example.com").with_name("Ada Lovelace");
/// assert_eq!(profile.label(), Some("Ada Lovelace"));
/// assert_eq!(UserProfile::new(ada).label(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserProfile {
    /// The user.
    pub user_id: UserId,
    /// Their email address, when known and visible.
    pub email: Option<String>,
    /// Their name, when known and visible.
    pub name: Option<String>,
    /// Whether the user confirmed `email` (on Supabase,
    /// `auth.users.email_confirmed_at` is set). False when unknown.
    #[serde(default)]
    pub email_confirmed: bool,
}

impl UserProfile {
    /// A profile with neither email nor name: the user's id alone.
    pub fn new(user_id: UserId) -> Self {
        UserProfile {
            user_id,
            email: None,
            name: None,
            email_confirmed: false,
        }
    }

    /// With this email address; a blank one is none.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = non_blank(email.into());
        self
    }

    /// With this name; a blank one is none.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = non_blank(name.into());
        self
    }

    /// With `email` marked confirmed (or not).
    pub fn with_email_confirmed(mut self, confirmed: bool) -> Self {
        self.email_confirmed = confirmed;
        self
    }

    /// The email address, only if the user confirmed it: what invitations
    /// and verified domains match against.
    pub fn confirmed_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_confirmed)
    }

    /// What to call the user: the name, else the email, else `None` (show
    /// the id).
    pub fn label(&self) -> Option<&str> {
        self.name.as_deref().or(self.email.as_deref())
    }
}

fn non_blank(text: String) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}
