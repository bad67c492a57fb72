//! The console's verified domains: the operator's list, the org's join setting, joining.
