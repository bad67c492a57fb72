//! Short-window rate limits: setting them and deciding against them.
