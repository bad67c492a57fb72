//! The console in a real browser: placeholder until the scenarios land.
