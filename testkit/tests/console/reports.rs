//! The reports page: range, granularity, grouping, chart and table, CSV.
