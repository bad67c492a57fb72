//! The reports page over real HTTP, on the demo's Initech (Asia/Tokyo; a
//! month of AI calls by carol, its owner, and erin, a member): a member
//! reads the report as a chart with labelled axes and a table whose
//! amounts carry their unit, grouped as asked and paged with a "next"
//! link; the CSV download is the same report, every page of it; the
//! numbers are the facade's. Refused: another organization's member (403,
//! nothing shown), a member asking for usage per member (403, grouping or
//! filtering), and a query that does not parse (400 naming the field).

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use tenancy::model::report::{Granularity, ReportDimension, ReportQuery, ReportRow};
use tenancy::{Tenancy, TenantContext, UserId};

use super::{Page, Site, site};

fn tenancy(s: &Site) -> &Tenancy {
    s.demo.app.auth.tenancy()
}

/// The `href` of the link marked `rel="next"`, unescaped.
fn next_link(body: &str) -> Option<String> {
    let end = body.find("\" rel=\"next\"")?;
    let start = body[..end].rfind("href=\"")? + "href=\"".len();
    Some(body[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// Every row of `query`, read through the facade page by page.
async fn all_rows(tenancy: &Tenancy, ctx: &TenantContext, query: ReportQuery) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = tenancy
            .usage_report(ctx, &query.clone().after(after).limit(1000))
            .await
            .unwrap();
        rows.extend(page.rows);
        match page.next {
            Some(next) => after = Some(next),
            None => return rows,
        }
    }
}

/// November in Tokyo so far (the demo's now is 24 November, 12:00 there):
/// the page's default range.
fn november_so_far() -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    (
        Utc.with_ymd_and_hms(2026, 10, 31, 15, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap(),
    )
}

/// The rows of the page's main table ("Rows"), each as its cells' text.
fn table_rows(page: &Page) -> Vec<Vec<String>> {
    let start = page.body.find("id=\"rows-heading\"").expect("a rows panel");
    let section = &page.body[start..];
    let Some(body_start) = section.find("<tbody>") else {
        return Vec::new();
    };
    let body_end = section.find("</tbody>").unwrap();
    section[body_start + 7..body_end]
        .split("<tr>")
        .skip(1)
        .map(|tr| {
            tr.split("<td")
                .skip(1)
                .map(|td| {
                    let inner = &td[td.find('>').unwrap() + 1..td.find("</td>").unwrap()];
                    strip_tags(inner)
                })
                .collect()
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn a_member_reads_the_month_by_model_as_a_chart_and_a_table_with_units() {
    let s = site().await;
    let (initech, erin) = (s.demo.initech, s.demo.erin);
    let ctx = tenancy(&s).context(erin, initech).await.unwrap();
    let (from, to) = november_so_far();
    let query = ReportQuery::new(initech, from, to)
        .granularity(Granularity::Month)
        .group_by([ReportDimension::Model]);
    let expected = all_rows(tenancy(&s), &ctx, query).await;
    let gpt = expected
        .iter()
        .find(|r| r.key.model.as_deref() == Some("gpt-4o"))
        .expect("the seeds' gpt-4o calls");
    let amount = |row: &ReportRow, metric: &str| {
        row.amounts
            .iter()
            .find(|(m, _)| m.as_str() == metric)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {metric} in {row:?}"))
    };
    let tokens = amount(gpt, "tokens");
    assert!(tokens > Decimal::from(100_000), "{tokens}");

    let path = format!("/orgs/{initech}/reports?granularity=month&group=model");
    let page = s.get(erin, &path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The chart: an SVG image with its axes titled, the month along the
    // bottom, dollars (cost is charted first) up the side.
    assert!(page.body.contains("<svg role=\"img\""), "{}", page.body);
    for text in ["Month (Asia/Tokyo)", "US dollars", "Nov 2026"] {
        assert!(
            page.body.contains(&format!(">\n{text}\n</text>")),
            "no axis text {text}: {}",
            page.body
        );
    }
    // The table: one row per model, amounts with their unit, as the
    // facade sums them.
    let rows = table_rows(&page);
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    let gpt_row = rows
        .iter()
        .find(|r| r[1] == "gpt-4o")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(gpt_row[0], "2026-11");
    let tokens_text = format!("{} tokens", grouped(tokens));
    assert!(
        gpt_row.contains(&tokens_text),
        "{tokens_text} not in {gpt_row:?}"
    );
    let cost = amount(gpt, "cost_usd");
    assert!(
        gpt_row.contains(&format!("${}", cost.normalize())),
        "${cost} not in {gpt_row:?}"
    );
    let images = rows
        .iter()
        .find(|r| r[1] == "gpt-image-1")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert!(images.contains(&"46 images".to_owned()), "{images:?}");
    // A member sees no per-member grouping or filter.
    assert!(!page.body.contains("value=\"user\""), "{}", page.body);
    assert!(!page.body.contains("id=\"report-user\""));
}

/// `n` (a whole number) with thousands separators.
fn grouped(n: Decimal) -> String {
    let digits = n.normalize().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[tokio::test]
async fn the_owner_sees_members_by_name_and_pages_through_hours() {
    let s = site().await;
    let (initech, carol, erin) = (s.demo.initech, s.demo.carol, s.demo.erin);
    let ctx = tenancy(&s).context(carol, initech).await.unwrap();
    // Thirty days of hours, by member and metric: more than a page.
    let from = Utc.with_ymd_and_hms(2026, 10, 24, 15, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap();
    let query = ReportQuery::new(initech, from, to)
        .granularity(Granularity::Hour)
        .group_by([ReportDimension::User, ReportDimension::Metric]);
    let expected = all_rows(tenancy(&s), &ctx, query).await;
    assert!(expected.len() > 100, "{} rows", expected.len());

    let path = format!(
        "/orgs/{initech}/reports?from=2026-10-25&to=2026-11-24&granularity=hour&group=user&group=metric"
    );
    let first = s.get(carol, &path).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    // People by name and email, never a bare id.
    assert!(first.body.contains("Carol Chen"), "{}", first.body);
    assert!(first.body.contains("erin@initech.example"));
    let mut rows = table_rows(&first);
    assert_eq!(rows.len(), 100);
    let next = next_link(&first.body).expect("a next page");
    let second = s.get(carol, next.trim_start_matches("/console")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    rows.extend(table_rows(&second));
    assert!(next_link(&second.body).is_none(), "two pages in all");
    assert_eq!(
        rows.len(),
        expected.len(),
        "page 2 starts {:?}; expected[100..103] {:?}; rows[95..100] {:?}",
        &rows[100..103],
        &expected[100..103],
        &rows[95..100]
    );
    // The rows, in order, are the facade's: the hour in Tokyo, the
    // metric, the member.
    for (row, want) in rows.iter().zip(&expected) {
        let local = want
            .bucket_start
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%Y-%m-%d %H:%M")
            .to_string();
        assert_eq!(row[0], local);
        assert_eq!(
            Some(row[1].as_str()),
            want.key.metric.as_ref().map(|m| m.as_str())
        );
        assert_eq!(row[2].as_str(), row_person(want.key.user, carol, erin));
    }
    // Bare ids appear only inside the member filter's option values.
    let without_options = strip_tags(&first.body);
    assert!(!without_options.contains(&erin.to_string()), "an id shown");
}

fn row_person(user: Option<UserId>, carol: UserId, erin: UserId) -> &'static str {
    match user {
        Some(u) if u == carol => "Carol Chen carol@globex.example",
        Some(u) if u == erin => "Erin Endo erin@initech.example",
        _ => "no member",
    }
}

#[tokio::test]
async fn the_csv_is_the_whole_report_with_people_named() {
    let s = site().await;
    let (initech, carol, erin) = (s.demo.initech, s.demo.carol, s.demo.erin);
    let ctx = tenancy(&s).context(erin, initech).await.unwrap();
    let (from, to) = november_so_far();
    let query = ReportQuery::new(initech, from, to)
        .granularity(Granularity::Day)
        .group_by([ReportDimension::Model]);
    let expected = all_rows(tenancy(&s), &ctx, query).await;

    let csv = s
        .get(erin, &format!("/orgs/{initech}/reports.csv?group=model"))
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(
        csv.headers["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let disposition = csv.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"usage-"),
        "{disposition}"
    );
    let mut lines = csv.body.lines();
    assert_eq!(
        lines.next(),
        Some(
            "bucket_start,metric,provider,model,operation,user,amount,events,bucket,user_name,user_email"
        )
    );
    // One line per row and metric, as the facade sums them.
    let mut got: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 11, "{line}");
        got.insert(
            (f[8].to_owned(), f[3].to_owned(), f[1].to_owned()),
            f[6].parse().unwrap(),
        );
    }
    let mut want = BTreeMap::new();
    for row in &expected {
        let day = row
            .bucket_start
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%Y-%m-%d")
            .to_string();
        for (metric, amount) in &row.amounts {
            want.insert(
                (
                    day.clone(),
                    row.key.model.clone().unwrap(),
                    metric.to_string(),
                ),
                amount.normalize(),
            );
        }
    }
    assert_eq!(got, want);
    assert!(got.len() > 40, "{}", got.len());

    // By member, for the owner: names and emails beside the id.
    let csv = s
        .get(
            carol,
            &format!("/orgs/{initech}/reports.csv?group=user&granularity=month"),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    let people: Vec<(String, String, String)> = csv
        .body
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[5].to_owned(), f[9].to_owned(), f[10].to_owned())
        })
        .collect();
    assert!(
        people.contains(&(
            erin.to_string(),
            "Erin Endo".to_owned(),
            "erin@initech.example".to_owned()
        )),
        "{people:?}"
    );
    assert!(people.contains(&(
        carol.to_string(),
        "Carol Chen".to_owned(),
        "carol@globex.example".to_owned()
    )));
}

#[tokio::test]
async fn another_orgs_member_and_a_member_asking_per_member_are_refused() {
    let s = site().await;
    let (initech, bob, erin, carol) = (s.demo.initech, s.demo.bob, s.demo.erin, s.demo.carol);
    // Bob is a member of Acme only.
    for path in [
        format!("/orgs/{initech}/reports"),
        format!("/orgs/{initech}/reports.csv"),
        format!("/orgs/{initech}/reports?group=model"),
    ] {
        let page = s.get(bob, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(page.body.contains("not a member of this organization"));
        assert!(!page.body.contains("gpt-4o") && !page.body.contains("tokens"));
    }
    // Erin, a member of Initech, may not read usage per member.
    for path in [
        format!("/orgs/{initech}/reports?group=user"),
        format!("/orgs/{initech}/reports?group=model&group=user"),
        format!("/orgs/{initech}/reports?user={carol}"),
        format!("/orgs/{initech}/reports.csv?group=user"),
        format!("/orgs/{initech}/reports.csv?user={carol}"),
    ] {
        let page = s.get(erin, &path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(page.body.contains("owners and admins"), "{}", page.body);
        assert!(!page.body.contains("Carol Chen"), "{}", page.body);
    }
    // Her own usage alone she may read, as the API allows.
    let own = s
        .get(erin, &format!("/orgs/{initech}/reports?user={erin}"))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(!table_rows(&own).is_empty());
    // Nor can alice, a viewer there; carol, its owner, can.
    let alices = s
        .get(s.demo.alice, &format!("/orgs/{initech}/reports?group=user"))
        .await;
    assert_eq!(alices.status, StatusCode::FORBIDDEN);
    let carols = s
        .get(carol, &format!("/orgs/{initech}/reports?group=user"))
        .await;
    assert_eq!(carols.status, StatusCode::OK, "{}", carols.body);
    assert!(carols.body.contains("Erin Endo"));
}

#[tokio::test]
async fn a_query_that_does_not_parse_is_400_naming_the_field() {
    let s = site().await;
    let (initech, erin) = (s.demo.initech, s.demo.erin);
    for (query, field) in [
        ("granularity=week", "granularity"),
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-11-10&to=2026-11-01", "to"),
        ("group=colour", "group_by"),
        ("after=not-a-cursor", "after"),
        ("chart=Tokens%20!", "chart"),
        (
            "granularity=hour&from=2026-01-01&to=2026-11-01",
            "granularity",
        ),
    ] {
        for path in ["reports", "reports.csv"] {
            let page = s
                .get(erin, &format!("/orgs/{initech}/{path}?{query}"))
                .await;
            assert_eq!(
                page.status,
                StatusCode::BAD_REQUEST,
                "{path}?{query}: {}",
                page.body
            );
            assert!(
                page.body.contains(&format!("{field}: ")),
                "{path}?{query} does not name {field}: {}",
                page.body
            );
        }
    }
}

#[tokio::test]
async fn labels_render_inert_in_the_chart_table_and_csv() {
    let s = site().await;
    let (initech, erin) = (s.demo.initech, s.demo.erin);
    let now = chrono::DateTime::parse_from_rfc3339(super::DEMO_NOW)
        .unwrap()
        .with_timezone(&Utc);
    let event = tenancy::UsageEvent::new(initech)
        .user(erin)
        .ai_call("<b>evil</b>", "=HYPERLINK(\"x\")", "op,\"quoted\"")
        .tokens(10, 0, 5)
        .at(now);
    tenancy(&s)
        .service()
        .record_usage_batch(vec![event])
        .await
        .unwrap();

    let page = s
        .get(
            erin,
            &format!("/orgs/{initech}/reports?group=provider&group=model&group=operation"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("<b>evil</b>"), "{}", page.body);
    assert!(
        page.body.contains("&lt;b&gt;evil&lt;/b&gt;") || page.body.contains("&#60;b&#62;evil"),
        "{}",
        page.body
    );
    // In the CSV: quoted where it must be, and no formula a spreadsheet runs.
    let csv = s
        .get(
            erin,
            &format!("/orgs/{initech}/reports.csv?group=provider&group=model&group=operation"),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let line = csv
        .body
        .lines()
        .find(|l| l.contains("evil"))
        .unwrap_or_else(|| panic!("{}", csv.body));
    assert!(
        line.contains(",<b>evil</b>,\"'=HYPERLINK(\"\"x\"\")\",\"op,\"\"quoted\"\"\","),
        "{line}"
    );
}
