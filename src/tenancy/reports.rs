//! Usage history through the facade: reports, the event log, repricing,
//! exports and reconciliation of rollups.
