//! Bar charts as SVG, drawn with plotters' SVG backend, and amounts
//! written with their unit (`$0.24`, `315,184 tokens`), the one way every
//! console page writes them.
//!
//! Why plotters: it draws on the server, so the chart is in the HTML the
//! page is served with — no script, nothing for the Content-Security-Policy
//! to allow, and it works with JavaScript off. A chart has labelled axes:
//! the buckets (dates or hours) along the bottom, the values with their
//! unit up the side. Its text is SVG `<text>` that plotters escapes; it
//! and the axes are drawn in `currentColor`, so they follow the page's
//! colour scheme. Each series' legend and the chart's text alternative
//! (a table) are HTML beside it, escaped like the rest of the page.

use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

/// The chart's drawing size; the page scales it to its width.
const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
/// Room for the value labels and the unit left of the plot, and for the
/// bucket labels and the axis title under it.
const Y_LABELS: u32 = 84;
const X_LABELS: u32 = 44;
const FONT: f64 = 15.0;

/// A colour no chart uses, drawn and then replaced by `currentColor`.
const INK: RGBColor = RGBColor(1, 2, 3);
const INK_HEX: &str = "#010203";

/// The series colours, in order: distinct in light and dark mode alike.
pub(in crate::console) const PALETTE: [(u8, u8, u8); 8] = [
    (59, 110, 210),
    (214, 120, 36),
    (46, 150, 100),
    (190, 70, 140),
    (120, 100, 200),
    (30, 150, 170),
    (170, 140, 40),
    (200, 70, 70),
];

/// The `i`th series' colour as CSS (`#3B6ED2`), for a legend beside the
/// chart.
pub(in crate::console) fn colour(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02X}{g:02X}{b:02X}")
}

// --- Amounts with their unit ---------------------------------------------

/// How a metric's amounts are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::console) enum Unit {
    /// `cost_usd`: US dollars, `$1,234.50`, to the millionth of a dollar
    /// at most and at least to the cent.
    Usd,
    /// A counted metric with a word for its unit: `1 token`,
    /// `315,184 tokens`.
    Counted {
        one: &'static str,
        many: &'static str,
    },
    /// Any other metric: the amount and then the metric's key, whatever
    /// the amount (`1,234 ads_created`, `1 ads_created`).
    Key(String),
}

impl Unit {
    /// The unit of `metric` (a metric key).
    pub(in crate::console) fn of(metric: &str) -> Unit {
        match metric {
            "cost_usd" => Unit::Usd,
            "tokens" => Unit::Counted {
                one: "token",
                many: "tokens",
            },
            "images" => Unit::Counted {
                one: "image",
                many: "images",
            },
            "requests" => Unit::Counted {
                one: "request",
                many: "requests",
            },
            other => Unit::Key(other.to_owned()),
        }
    }

    /// `amount` with this unit: `$0.24`, `315,184 tokens`, `1 token`,
    /// `1,234 ads_created`.
    pub(in crate::console) fn format(&self, amount: Decimal) -> String {
        match self {
            Unit::Usd => {
                let sign = if amount.is_sign_negative() && !amount.is_zero() {
                    "-"
                } else {
                    ""
                };
                let mut dollars = amount.abs().round_dp(6).normalize();
                if dollars.scale() < 2 {
                    dollars.rescale(2);
                }
                format!("{sign}${}", grouped(dollars))
            }
            Unit::Counted { one, many } => {
                let word = if amount == Decimal::ONE { one } else { many };
                format!("{} {word}", number(amount))
            }
            Unit::Key(key) => format!("{} {key}", number(amount)),
        }
    }

    /// A value axis' tick: the dollar sign for dollars, the bare number
    /// otherwise (the axis title names the unit).
    fn tick(&self, value: f64) -> String {
        let value = Decimal::from_f64(value).unwrap_or_default();
        match self {
            Unit::Usd => self.format(value),
            _ => number(value.round_dp(6)),
        }
    }

    /// The value axis' title: what the numbers count.
    pub(in crate::console) fn axis_title(&self) -> String {
        match self {
            Unit::Usd => "US dollars".to_owned(),
            Unit::Counted { many, .. } => (*many).to_owned(),
            Unit::Key(key) => key.clone(),
        }
    }
}

/// `amount` of `metric` with its unit ([`Unit::format`]): `$0.24`,
/// `315,184 tokens`.
pub(in crate::console) fn amount(metric: &str, amount: Decimal) -> String {
    Unit::of(metric).format(amount)
}

/// `value` without trailing zeros, its whole part in groups of three:
/// `315,184`, `1,234.5`, `0.001`.
pub(in crate::console) fn number(value: Decimal) -> String {
    let sign = if value.is_sign_negative() && !value.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{}", grouped(value.abs().normalize()))
}

/// A non-negative `value` as written (its scale kept), the whole part in
/// groups of three.
fn grouped(value: Decimal) -> String {
    let text = value.to_string();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text.as_str(), None),
    };
    let mut out = String::with_capacity(text.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

// --- Charts --------------------------------------------------------------

/// One series of a chart: its name (for the legend) and a value per
/// bucket, in the chart's bucket order.
#[derive(Debug, Clone)]
pub(in crate::console) struct Series {
    pub(in crate::console) name: String,
    pub(in crate::console) values: Vec<Decimal>,
}

/// A bar chart: a bar per bucket, the series stacked in it.
#[derive(Debug)]
pub(in crate::console) struct Bars<'a> {
    /// The chart's accessible name.
    pub(in crate::console) label: &'a str,
    /// The bucket axis' title: `Day (Asia/Tokyo)`.
    pub(in crate::console) x_title: &'a str,
    /// Each bucket's label along the bottom (`Nov 3`), thinned out
    /// where they would not fit.
    pub(in crate::console) buckets: &'a [String],
    /// The unit of every value.
    pub(in crate::console) unit: &'a Unit,
    pub(in crate::console) series: &'a [Series],
}

/// `chart` as SVG: its axes labelled, a `<rect>` for each non-zero value
/// (the series stacked in the order given, the `i`th in
/// [`colour`]`(i)`), the tallest stack near the full height; `label` is
/// its accessible name. An empty string if plotters fails.
pub(in crate::console) fn bars(chart: &Bars<'_>) -> String {
    let mut svg = String::new();
    if draw(chart, &mut svg).is_err() {
        return String::new();
    }
    // Text and axes in the page's text colour, so dark mode reads.
    let svg = svg.replace(INK_HEX, "currentColor");
    // Accessible: the chart is an image named by `label`; the table beside
    // it is its text alternative. It scales to the width it is given.
    let label = escape(chart.label);
    let svg = svg.replacen(
        &format!("width=\"{WIDTH}\" height=\"{HEIGHT}\" "),
        "width=\"100%\" ",
        1,
    );
    svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" class=\"plot\" "),
        1,
    )
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(chart: &Bars<'_>, svg: &mut String) -> DrawResult {
    let slots = chart.buckets.len().max(1);
    let totals: Vec<f64> = (0..slots)
        .map(|i| {
            chart
                .series
                .iter()
                .filter_map(|s| s.values.get(i).and_then(|v| v.to_f64()))
                .filter(|v| *v > 0.0)
                .sum()
        })
        .collect();
    let highest = totals.iter().copied().fold(0.0_f64, f64::max);
    let top = if highest > 0.0 { highest * 1.08 } else { 1.0 };

    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    let text = ("sans-serif", FONT).into_font().color(&INK);
    let mut plot = ChartBuilder::on(&root)
        .margin_top(10)
        .margin_right(16)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(-0.5_f64..slots as f64 - 0.5, 0.0_f64..top)?;
    let tick = |v: &f64| chart.unit.tick(*v);
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(5)
        .y_label_formatter(&tick)
        .label_style(text.clone())
        .axis_desc_style(text.clone())
        .axis_style(INK.mix(0.6))
        .bold_line_style(INK.mix(0.15))
        .light_line_style(TRANSPARENT)
        .x_desc(chart.x_title)
        .y_desc(chart.unit.axis_title())
        .draw()?;

    // The bars, stacked.
    let mut base = vec![0.0_f64; slots];
    for (n, series) in chart.series.iter().enumerate() {
        let (r, g, b) = PALETTE[n % PALETTE.len()];
        for (i, value) in series.values.iter().enumerate().take(slots) {
            let value = value.to_f64().unwrap_or(0.0);
            if value <= 0.0 {
                continue;
            }
            let (low, high) = (base[i], base[i] + value);
            base[i] = high;
            let bar = Rectangle::new(
                [(i as f64 - 0.4, low), (i as f64 + 0.4, high)],
                RGBColor(r, g, b).filled(),
            );
            plot.plotting_area().draw(&bar)?;
        }
    }

    // The bucket labels: as many as fit, evenly spaced, the first always.
    let widest = chart
        .buckets
        .iter()
        .map(|b| b.chars().count())
        .max()
        .unwrap_or(1);
    let room = f64::from(WIDTH - Y_LABELS - 16) / slots as f64;
    let needed = widest as f64 * FONT * 0.6 + 10.0;
    let step = (needed / room).ceil().max(1.0) as usize;
    let label = text.pos(Pos::new(HPos::Center, VPos::Top));
    for (i, bucket) in chart.buckets.iter().enumerate().step_by(step) {
        let (x, y) = plot.backend_coord(&(i as f64, 0.0));
        root.draw(&Text::new(bucket.as_str(), (x, y + 6), label.clone()))?;
        root.draw(&PathElement::new(vec![(x, y), (x, y + 4)], INK.mix(0.6)))?;
    }
    root.present()?;
    Ok(())
}

/// The days of `month` (its first day), each with its usage in `days`
/// (zero when absent), up to and including `today`.
pub(in crate::console) fn month_days(
    month: NaiveDate,
    today: NaiveDate,
    days: &[(NaiveDate, Decimal)],
) -> Vec<(NaiveDate, Decimal)> {
    month_dates(month)
        .into_iter()
        .take_while(|date| *date <= today)
        .map(|date| {
            let used = days
                .iter()
                .find(|(d, _)| *d == date)
                .map_or(Decimal::ZERO, |(_, u)| *u);
            (date, used)
        })
        .collect()
}

/// Every day of `month` (its first day).
pub(in crate::console) fn month_dates(month: NaiveDate) -> Vec<NaiveDate> {
    month
        .iter_days()
        .take_while(|d| d.month() == month.month())
        .collect()
}

/// A month's daily chart: a slot for each day of `month`, `days` the
/// values of the days so far ([`month_days`]), the axis titled with the
/// zone `zone`.
pub(in crate::console) fn daily_bars(
    month: NaiveDate,
    days: &[(NaiveDate, Decimal)],
    unit: &Unit,
    zone: &str,
    label: &str,
) -> String {
    let dates = month_dates(month);
    let buckets: Vec<String> = dates
        .iter()
        .map(|d| d.format("%b %-d").to_string())
        .collect();
    let values = dates
        .iter()
        .map(|date| {
            days.iter()
                .find(|(d, _)| d == date)
                .map_or(Decimal::ZERO, |(_, v)| *v)
        })
        .collect();
    let series = [Series {
        name: unit.axis_title(),
        values,
    }];
    bars(&Bars {
        label,
        x_title: &format!("Day ({zone})"),
        buckets: &buckets,
        unit,
        series: &series,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    /// The text of every `<text>` of `svg`, in order.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text ")
            .skip(1)
            .map(|t| {
                let start = t.find('>').unwrap() + 1;
                let end = t.find("</text>").unwrap();
                t[start..end].trim().to_owned()
            })
            .collect()
    }

    #[test]
    fn amounts_are_written_with_their_unit() {
        let cases = [
            ("cost_usd", dec!(0.24), "$0.24"),
            ("cost_usd", dec!(0), "$0.00"),
            ("cost_usd", dec!(3), "$3.00"),
            ("cost_usd", dec!(1234.5), "$1,234.50"),
            ("cost_usd", dec!(0.0015), "$0.0015"),
            ("cost_usd", dec!(0.12345678), "$0.123457"),
            ("cost_usd", dec!(1234567.891), "$1,234,567.891"),
            ("cost_usd", dec!(-2.5), "-$2.50"),
            ("tokens", dec!(315184), "315,184 tokens"),
            ("tokens", dec!(1), "1 token"),
            ("tokens", dec!(0), "0 tokens"),
            ("tokens", dec!(1000.000), "1,000 tokens"),
            ("tokens", dec!(999), "999 tokens"),
            ("images", dec!(46), "46 images"),
            ("requests", dec!(1), "1 request"),
            ("ads_created", dec!(1234), "1,234 ads_created"),
            ("ads_created", dec!(1), "1 ads_created"),
            ("gpu_seconds", dec!(12345.25), "12,345.25 gpu_seconds"),
        ];
        for (metric, value, written) in cases {
            assert_eq!(amount(metric, value), written, "{metric} {value}");
        }
        assert_eq!(number(dec!(-1234567)), "-1,234,567");
        assert_eq!(number(dec!(0.50)), "0.5");
        assert_eq!(number(dec!(100000)), "100,000");
    }

    #[test]
    fn ticks_are_numbers_and_the_axis_names_the_unit() {
        assert_eq!(Unit::of("tokens").tick(300000.0), "300,000");
        assert_eq!(Unit::of("cost_usd").tick(0.25), "$0.25");
        assert_eq!(Unit::of("tokens").axis_title(), "tokens");
        assert_eq!(Unit::of("cost_usd").axis_title(), "US dollars");
        assert_eq!(Unit::of("ads_created").axis_title(), "ads_created");
    }

    fn november() -> Vec<(NaiveDate, Decimal)> {
        let month = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let used: Vec<(NaiveDate, Decimal)> = (1..=24)
            .map(|d| {
                (
                    NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
                    Decimal::from(d * 10_000),
                )
            })
            .collect();
        month_days(month, today, &used)
    }

    #[test]
    fn a_month_of_bars_has_labelled_axes_and_an_accessible_name() {
        let month = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let days = november();
        assert_eq!(days.len(), 24);
        let svg = daily_bars(
            month,
            &days,
            &Unit::of("tokens"),
            "Asia/Tokyo",
            "tokens per day <x>",
        );
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"tokens per day &lt;x&gt;\""),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 24, "a bar a day so far");
        // The axes: their titles, the first day, values with separators.
        let texts = texts(&svg);
        for text in ["Day (Asia/Tokyo)", "tokens", "Nov 1", "Nov 29", "200,000"] {
            assert!(texts.iter().any(|t| t == text), "{text} not in {texts:?}");
        }
        assert!(!svg.contains(INK_HEX) && svg.contains("currentColor"));
        assert!(svg.contains("width=\"100%\"") && svg.contains("viewBox=\"0 0 720 260\""));
    }

    #[test]
    fn dollars_on_the_axis_and_stacked_series_in_their_colours() {
        let buckets: Vec<String> = ["Oct 2026", "Nov 2026"].map(String::from).into();
        let series = [
            Series {
                name: "gpt-4o".into(),
                values: vec![dec!(1.5), dec!(0)],
            },
            Series {
                name: "claude".into(),
                values: vec![dec!(0.5), dec!(2)],
            },
        ];
        let unit = Unit::Usd;
        let svg = bars(&Bars {
            label: "cost",
            x_title: "Month (UTC)",
            buckets: &buckets,
            unit: &unit,
            series: &series,
        });
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains(&format!("fill=\"{}\"", colour(0))), "{svg}");
        assert!(svg.contains(&format!("fill=\"{}\"", colour(1))), "{svg}");
        let texts = texts(&svg);
        for text in ["US dollars", "Month (UTC)", "Oct 2026", "Nov 2026", "$1.00"] {
            assert!(texts.iter().any(|t| t == text), "{text} not in {texts:?}");
        }
    }

    #[test]
    fn an_empty_month_draws_no_bars_but_its_axes() {
        let month = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let days = month_days(month, NaiveDate::from_ymd_opt(2026, 3, 5).unwrap(), &[]);
        assert_eq!(days.len(), 28);
        let svg = daily_bars(month, &days, &Unit::of("images"), "UTC", "none");
        assert_eq!(svg.matches("<rect").count(), 0);
        let texts = texts(&svg);
        assert!(texts.contains(&"Feb 1".to_owned()), "{texts:?}");
        assert!(texts.contains(&"images".to_owned()), "{texts:?}");
    }
}
