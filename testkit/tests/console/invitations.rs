//! The console's invitations: the invite form, pending invitations, the accept page.
