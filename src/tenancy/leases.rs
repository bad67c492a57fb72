//! Budget leases: local decisions on a leased slice of the budget.
