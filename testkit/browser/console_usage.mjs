// The usage page of Initech (in Asia/Tokyo), seen by carol, its owner,
// against what the demo's seeds imply (examples/host_app.rs): 46 of its
// 50 monthly images (92 %, a warning), the month's tokens under their
// limit, both resetting at the start of the next month in Tokyo; a daily
// chart per metric as SVG with its numbers as a table; the top members.
// The expected numbers are computed here from the seed rules, not copied
// from the page. Then the same page in dark mode.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { DEMO_NOW, look, panelTable, rows, signIn, switchTo } from './console_common.mjs';

const ZONE = 'Asia/Tokyo';

/** `date`'s calendar fields in `zone`. */
function fieldsIn(date, zone) {
    const parts = new Intl.DateTimeFormat('en-CA', {
        timeZone: zone,
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
    }).formatToParts(date);
    const get = (type) => Number(parts.find((p) => p.type === type).value);
    return { year: get('year'), month: get('month'), day: get('day') };
}

const pad = (n) => String(n).padStart(2, '0');
const today = fieldsIn(DEMO_NOW, ZONE);
const monthName = new Intl.DateTimeFormat('en-US', { timeZone: ZONE, month: 'long', year: 'numeric' }).format(DEMO_NOW);
// A monthly period resets at midnight on the first of the next month, in
// the organization's zone.
const next = today.month === 12 ? { year: today.year + 1, month: 1 } : { year: today.year, month: today.month + 1 };
const RESETS = `${next.year}-${pad(next.month)}-01 00:00 ${ZONE}`;

// The seeds: for each of the 30 days up to `now` (one minute before the
// hour of `now` on that day), one call per user (carol, then erin) of
// `input = 1500 + 170 * day + 900 * i` tokens in and a third of that out;
// and 46 images at `now`, against limits of 50 images and 1 000 000 tokens
// a month.
const IMAGES = { used: 46, limit: 50 };
const TOKEN_LIMIT = 1_000_000;
const tokensOf = (day, i) => {
    const input = 1500 + 170 * day + 900 * i;
    return input + Math.floor(input / 3);
};
const daily = []; // [date in Tokyo, tokens] for the days of this month
const perUser = [0, 0];
for (let day = 0; day < 30; day++) {
    const at = new Date(DEMO_NOW.getTime() - (29 - day) * 86_400_000 - 60_000);
    const f = fieldsIn(at, ZONE);
    if (f.year !== today.year || f.month !== today.month) continue;
    daily.push([`${f.year}-${pad(f.month)}-${pad(f.day)}`, tokensOf(day, 0) + tokensOf(day, 1)]);
    perUser[0] += tokensOf(day, 0);
    perUser[1] += tokensOf(day, 1);
}
const TOKENS = perUser[0] + perUser[1];

/** `n` of a counted unit as the console writes amounts: `315,184 tokens`, `1 token`. */
const counted = (n, one, many) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
const tokensText = (n) => counted(n, 'token', 'tokens');
const imagesText = (n) => counted(n, 'image', 'images');

/** `part / whole` as the page shows a percentage: at most 2 decimals, no trailing zeros. */
const percent = (part, whole) => `${Number(((part / whole) * 100).toFixed(2))} %`;

/** The figure of the chart of `metric`. */
const figure = (page, metric) => page.locator('figure').filter({ hasText: `${metric} per day in ` });

await scenario('console-usage', async () => {
    const page = await signIn('carol');

    await step("Initech's usage page, in its zone", async () => {
        await switchTo(page, 'Initech');
        await expectText(page.locator('main .subtitle'), `Initech · periods in ${ZONE}`);
        await look(page, 'usage-initech');
    });

    await step('the monthly images limit at the warning level', async () => {
        const lines = await rows(panelTable(page, 'This period'));
        const images = lines.filter((l) => l[0] === 'images' && l[1] === 'monthly' && l[2] === 'organization');
        const expected = [
            'images',
            'monthly',
            'organization',
            imagesText(IMAGES.used),
            imagesText(0),
            `${imagesText(IMAGES.limit)} hard`,
            imagesText(IMAGES.limit - IMAGES.used),
            `Warning ${percent(IMAGES.used, IMAGES.limit)}`,
            RESETS,
        ];
        assertEqual(JSON.stringify(images), JSON.stringify([expected]), 'the monthly images line');
        assertEqual(expected[7], 'Warning 92 %', 'the seeds imply');
        console.log(`images line: ${images[0].join(' | ')}`);
        const row = panelTable(page, 'This period').locator('tbody tr').nth(lines.indexOf(images[0]));
        assertEqual(await row.locator('.level').getAttribute('class'), 'level level-warning', 'the level');
        assertEqual(await row.locator('svg.bar').getAttribute('class'), 'bar level-warning', 'the bar');
        assertEqual(await row.locator('svg.bar .fill').getAttribute('width'), '92', 'the bar filled');
    });

    await step('the monthly tokens limit, within bounds', async () => {
        const lines = await rows(panelTable(page, 'This period'));
        const tokens = lines.filter((l) => l[0] === 'tokens' && l[1] === 'monthly' && l[2] === 'organization');
        const expected = [
            'tokens',
            'monthly',
            'organization',
            tokensText(TOKENS),
            tokensText(0),
            `${tokensText(TOKEN_LIMIT)} hard`,
            tokensText(TOKEN_LIMIT - TOKENS),
            `OK ${percent(TOKENS, TOKEN_LIMIT)}`,
            RESETS,
        ];
        assertEqual(JSON.stringify(tokens), JSON.stringify([expected]), 'the monthly tokens line');
        console.log(`tokens line: ${tokens[0].join(' | ')}`);
        // Lines without a limit show none, and every line resets in Tokyo.
        for (const l of lines) {
            assert(l[8].endsWith(` ${ZONE}`), `a reset time outside the zone: ${JSON.stringify(l)}`);
            if (l[5] === 'none') assertEqual(l[7], '—', `the level of ${l.slice(0, 3)}`);
        }
    });

    await step('the daily tokens chart: SVG, with its numbers as a table', async () => {
        const fig = figure(page, 'tokens');
        assertEqual(await fig.count(), 1, 'tokens charts');
        const caption = `tokens per day in ${monthName}: ${tokensText(TOKENS)} in all`;
        await expectText(fig.locator('figcaption'), caption);
        const svg = fig.getByRole('img', { name: caption, exact: true });
        assertEqual(await svg.evaluate((e) => e.namespaceURI), 'http://www.w3.org/2000/svg', 'the chart element');
        assertEqual(await svg.locator('rect').count(), daily.length, 'bars (one a day with usage)');
        // Labelled axes: the days in the organization's zone, the unit.
        const texts = await svg.locator('text').evaluateAll((ts) => ts.map((t) => t.textContent.trim()));
        for (const t of [`Day (${ZONE})`, 'tokens']) {
            assert(texts.includes(t), `no "${t}" on the chart's axes: ${JSON.stringify(texts)}`);
        }
        await fig.locator('summary').click();
        const table = fig.getByRole('table');
        await table.waitFor({ state: 'visible' });
        const numbers = await rows(table);
        assertEqual(JSON.stringify(numbers), JSON.stringify(daily.map(([d, t]) => [d, tokensText(t)])), 'the chart table');
        assertEqual(numbers.length, today.day, 'days in the table (the month so far)');
    });

    await step('the daily images chart: one bar, today', async () => {
        const fig = figure(page, 'images');
        const caption = `images per day in ${monthName}: ${imagesText(IMAGES.used)} in all`;
        await expectText(fig.locator('figcaption'), caption);
        assertEqual(await fig.getByRole('img', { name: caption, exact: true }).locator('rect').count(), 1, 'image bars');
        const numbers = await rows(fig.locator('table'));
        const nonZero = numbers.filter(([, n]) => n !== imagesText(0));
        const todayText = `${today.year}-${pad(today.month)}-${pad(today.day)}`;
        assertEqual(JSON.stringify(nonZero), JSON.stringify([[todayText, imagesText(IMAGES.used)]]), 'days with images');
    });

    await step('the top members (for the owner)', async () => {
        const panel = page.getByRole('region', { name: 'Top members this month', exact: true });
        await expectText(panel.getByRole('heading', { level: 3 }).last(), 'tokens');
        const top = await rows(panel.locator('table').last());
        const expected = [...perUser].sort((a, b) => b - a).map(tokensText);
        assertEqual(JSON.stringify(top.map((r) => r[1])), JSON.stringify(expected), 'tokens per member, most first');
        const people = top.map(([who]) => who).sort();
        assertEqual(
            JSON.stringify(people),
            JSON.stringify(['Carol Chen carol@globex.example', 'Erin Endo erin@initech.example']),
            'the top members by name and email',
        );
        assert(top[0][0] !== top[1][0], `two members shown alike: ${top[0][0]}`);
        await look(page, 'usage-initech-numbers');
    });

    await step('the same page in dark mode', async () => {
        // JavaScript on, so that axe-core runs in the page itself, which
        // keeps the colour scheme (the console runs no script either way).
        const dark = await signIn('carol', { javaScriptEnabled: true, colorScheme: 'dark' });
        await switchTo(dark, 'Initech');
        assertEqual(
            await dark.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches),
            true,
            'dark mode',
        );
        await look(dark, 'usage-initech-dark');
    });
});

