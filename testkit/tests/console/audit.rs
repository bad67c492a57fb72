//! The console's audit log pages, for owners and admins and for the operator.
