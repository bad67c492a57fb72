//! Short-window rate limits: GCRA, pure.
