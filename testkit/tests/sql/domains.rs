//! Verified domains in SQL: joining through one, and the look-alikes refused.
