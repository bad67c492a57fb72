//! Daily usage charts as SVG, drawn with plotters' SVG backend.
//!
//! Why plotters: it draws on the server, so the chart is in the HTML the
//! page is served with — no script, nothing for the Content-Security-Policy
//! to allow, and it works with JavaScript off. The chart holds only shapes
//! (no text, so no fonts are needed); its labels and its text alternative
//! are HTML beside it, escaped like the rest of the page.

use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

const WIDTH: u32 = 620;
const HEIGHT: u32 = 140;

/// One bar: a day and its usage.
#[derive(Debug, Clone)]
pub(super) struct Day {
    pub(super) date: NaiveDate,
    pub(super) used: Decimal,
}

/// The days of `month` (its first day), each with its usage in `days`
/// (zero when absent), up to and including `today`.
pub(super) fn month_days(
    month: NaiveDate,
    today: NaiveDate,
    days: &[(NaiveDate, Decimal)],
) -> Vec<Day> {
    let mut out = Vec::with_capacity(31);
    let mut date = month;
    while date.month() == month.month() && date <= today {
        let used = days
            .iter()
            .find(|(d, _)| *d == date)
            .map_or(Decimal::ZERO, |(_, u)| *u);
        out.push(Day { date, used });
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    out
}

/// An SVG bar chart of `days` across a month of 31 slots, the tallest bar
/// the full height; `label` becomes its accessible name. The markup holds
/// numbers and fixed colours only.
pub(super) fn daily_bars(days: &[Day], label: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let highest = days
            .iter()
            .filter_map(|d| d.used.to_f64())
            .fold(0.0_f64, f64::max);
        let slot = WIDTH as f64 / 31.0;
        for (i, day) in days.iter().enumerate() {
            let value = day.used.to_f64().unwrap_or(0.0);
            if highest <= 0.0 || value <= 0.0 {
                continue;
            }
            let height = ((value / highest) * (HEIGHT as f64 - 4.0)).max(1.0);
            let x0 = (i as f64 * slot + 1.0) as i32;
            let x1 = ((i + 1) as f64 * slot - 1.0) as i32;
            let y0 = (HEIGHT as f64 - height) as i32;
            let bar = Rectangle::new(
                [(x0, y0), (x1, HEIGHT as i32)],
                RGBColor(59, 110, 210).filled(),
            );
            if root.draw(&bar).is_err() {
                return String::new();
            }
        }
        if root.present().is_err() {
            return String::new();
        }
    }
    // Accessible: the chart is an image named by `label`; the data table
    // beside it is its text alternative.
    let label = escape(label);
    svg.replacen(
        "<svg ",
        &format!(
            "<svg role=\"img\" aria-label=\"{label}\" class=\"chart\" preserveAspectRatio=\"none\" "
        ),
        1,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_of_bars_is_svg_with_an_accessible_name() {
        let month = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let used: Vec<(NaiveDate, Decimal)> = (1..=30)
            .map(|d| {
                (
                    NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                    Decimal::from(d * 10),
                )
            })
            .collect();
        let days = month_days(month, today, &used);
        assert_eq!(days.len(), 30);
        let svg = daily_bars(&days, "tokens per day <x>");
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"tokens per day &lt;x&gt;\""),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(!svg.contains("<text"));
    }

    #[test]
    fn an_empty_month_draws_no_bars() {
        let month = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let days = month_days(month, NaiveDate::from_ymd_opt(2026, 3, 5).unwrap(), &[]);
        assert_eq!(days.len(), 28);
        assert_eq!(daily_bars(&days, "none").matches("<rect").count(), 0);
    }
}
