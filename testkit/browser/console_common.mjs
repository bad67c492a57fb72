// What the console scenarios share: signing in as a seeded user of the
// demo app (examples/host_app.rs), looking at a page (an accessibility
// check that allows no violation at all, then a full-page screenshot),
// and reading tables as text.
//
// The scenarios run against `host_app::demo_with(FakeClock::at(DEMO_NOW))`
// as testkit/tests/console/main.rs serves it: its seeds are their
// expectations.

import {
    assert,
    assertEqual,
    checkAccessibility,
    expectPath,
    expectText,
    newPage,
    screenshot,
} from './lib.mjs';

/** Where the demo's clock stands (`DEMO_NOW` in testkit/tests/console/main.rs). */
export const DEMO_NOW = new Date('2026-11-24T03:00:00Z');

/**
 * A page without JavaScript (the console runs none and must work without
 * it), signed in as the demo user `name` through the dev-only sign-in,
 * which lands on the console's start page. `options` go to `newPage`.
 */
export async function signIn(name, options = {}) {
    const page = await newPage({ javaScriptEnabled: false, ...options });
    await page.goto(`/dev/sign-in?as=${encodeURIComponent(name)}`);
    expectPath(page, '/console');
    await expectText(page.getByRole('heading', { level: 1 }), 'Your organizations');
    return page;
}

/**
 * Checks the page as it is now with axe-core, failing on any violation
 * (not only the serious and critical ones lib.mjs fails on), and saves a
 * full-page screenshot as `console-<name>.png`.
 */
export async function look(page, name) {
    const results = await checkAccessibility(page, name);
    const found = results.violations.map(
        (v) => `[${v.impact}] ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
    );
    assert(found.length === 0, `accessibility (${name}): violations on ${page.url()}:\n  ${found.join('\n  ')}`);
    await screenshot(page, `console-${name}`);
}

/** The org selector in the sidebar. */
export function selector(page) {
    return page.getByRole('navigation', { name: 'Organizations', exact: true });
}

/** The selector's link to organization `name` (its name is "<name> <role>"). */
export function selectorLink(page, name) {
    return selector(page).getByRole('link', { name: new RegExp(`^${name} `) });
}

/**
 * Follows the selector's link to `org` and checks that the page is that
 * organization's usage page, with the selector marking it as current.
 */
export async function switchTo(page, org) {
    const link = selectorLink(page, org);
    const href = await link.getAttribute('href');
    assert(/^\/console\/orgs\/[0-9a-f-]{36}\/usage$/.test(href), `the selector links ${org} to ${href}`);
    await link.click();
    await page.waitForURL(href);
    await expectText(page.getByRole('heading', { level: 1 }), 'Usage and limits');
    await expectText(page.locator('main .subtitle'), `${org} · periods in `);
    const current = await selector(page).locator('a[aria-current="true"]').allTextContents();
    assertEqual(current.length, 1, `links the selector marks as current (${current})`);
    assert(
        normalize(current[0]).startsWith(`${org} `),
        `the selector marks ${JSON.stringify(normalize(current[0]))} as current, not ${org}`,
    );
}

/** The rows of `table` (a locator), each as its cells' text. */
export async function rows(table) {
    return table.locator('tbody tr').evaluateAll((trs) =>
        trs.map((tr) => [...tr.cells].map((td) => td.textContent.replace(/\s+/g, ' ').trim())),
    );
}

/** The table of the panel headed `heading`. */
export function panelTable(page, heading) {
    return page.getByRole('region', { name: heading, exact: true }).locator('table').first();
}

/** Text with whitespace collapsed. */
export function normalize(text) {
    return text.replace(/\s+/g, ' ').trim();
}
