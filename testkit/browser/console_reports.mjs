// The reports page, seen by erin, a member of Initech (in Asia/Tokyo),
// against what the demo's seeds imply (examples/host_app.rs): she opens
// Reports from the sections navigation (this month so far, by day, cost
// charted), checks the chart's axes are labelled (days in Tokyo along the
// bottom, US dollars up the side), switches to months grouped by model
// with tokens charted, reads the table (amounts with their unit), and
// downloads the CSV. A member is offered no per-member grouping. The
// expected numbers are computed here from the seed rules, not copied from
// the page. testkit/tests/console/browser.rs checks what it printed
// against the facade.

import { readFile } from 'node:fs/promises';

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { DEMO_NOW, look, normalize, panelTable, rows, signIn, switchTo } from './console_common.mjs';

const ZONE = 'Asia/Tokyo';

/** `date`'s calendar fields in `zone`. */
function fieldsIn(date, zone) {
    const parts = new Intl.DateTimeFormat('en-CA', {
        timeZone: zone,
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
    }).formatToParts(date);
    const get = (type) => Number(parts.find((p) => p.type === type).value);
    return { year: get('year'), month: get('month'), day: get('day') };
}

const pad = (n) => String(n).padStart(2, '0');
const today = fieldsIn(DEMO_NOW, ZONE);
const MONTH = `${today.year}-${pad(today.month)}`;

// The seeds: for each of the 30 days up to `now` (one minute before the
// hour of `now` on that day), one gpt-4o call per user (carol, then erin)
// of `input = 1500 + 170 * day + 900 * i` tokens in and a third of that
// out, costing `input` millionths of a dollar; and 46 gpt-image-1 images
// at `now`.
let tokens = 0;
let micros = 0;
let calls = 0;
for (let day = 0; day < 30; day++) {
    const at = new Date(DEMO_NOW.getTime() - (29 - day) * 86_400_000 - 60_000);
    const f = fieldsIn(at, ZONE);
    if (f.year !== today.year || f.month !== today.month) continue;
    for (const i of [0, 1]) {
        const input = 1500 + 170 * day + 900 * i;
        tokens += input + Math.floor(input / 3);
        micros += input;
        calls += 1;
    }
}

/** Millionths of a dollar as the console writes dollars: `$1,234.50`, at least cents. */
function dollars(millionths) {
    const whole = Math.floor(millionths / 1_000_000).toLocaleString('en-US');
    let fraction = String(millionths % 1_000_000).padStart(6, '0').replace(/0+$/, '');
    if (fraction.length < 2) fraction = fraction.padEnd(2, '0');
    return `$${whole}.${fraction}`;
}

const TOKENS = `${tokens.toLocaleString('en-US')} tokens`;
const COST = dollars(micros);

/** The texts of the chart's SVG (its axes' labels and titles). */
async function chartTexts(page) {
    const svg = page.getByRole('region', { name: 'Chart', exact: true }).getByRole('img').first();
    assertEqual(await svg.evaluate((e) => e.namespaceURI), 'http://www.w3.org/2000/svg', 'the chart element');
    return svg.locator('text').evaluateAll((ts) => ts.map((t) => t.textContent.trim()));
}

await scenario('console-reports', async () => {
    const page = await signIn('erin');

    await step("Initech's reports, from the sections navigation", async () => {
        await switchTo(page, 'Initech');
        const sections = page.getByRole('navigation', { name: 'Sections of Initech' });
        await sections.getByRole('link', { name: 'Reports', exact: true }).click();
        await page.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/reports$/);
        await expectText(page.getByRole('heading', { level: 1 }), 'Reports');
        await expectText(page.locator('main .subtitle'), `Initech · usage by day · times in ${ZONE}`);
        const current = await sections.locator('a[aria-current="page"]').allTextContents();
        assertEqual(JSON.stringify(current.map(normalize)), JSON.stringify(['Reports']), 'the section marked current');
        // A member is offered no grouping by member.
        const groups = await page.getByRole('group', { name: 'Group by' }).getByRole('checkbox').count();
        assertEqual(groups, 4, 'grouping choices (metric, provider, model, operation)');
        assertEqual(await page.locator('#report-user').count(), 0, 'a member filter');
    });

    await step('the chart has labelled axes: days in Tokyo, US dollars', async () => {
        const texts = await chartTexts(page);
        for (const t of [`Day (${ZONE})`, 'US dollars', `${new Intl.DateTimeFormat('en-US', { month: 'short' }).format(DEMO_NOW)} 1`]) {
            assert(texts.includes(t), `no "${t}" on the chart's axes: ${JSON.stringify(texts)}`);
        }
        assert(texts.some((t) => /^\$\d/.test(t)), `dollar ticks: ${JSON.stringify(texts)}`);
        const caption = normalize(await page.locator('figure figcaption').textContent());
        assertEqual(caption, `cost_usd per day, ${MONTH}-01 to ${MONTH}-${pad(today.day)}: ${COST} in all`, 'the caption');
        const table = await rows(panelTable(page, 'Rows'));
        assertEqual(table.length, today.day, 'a row a day so far');
        await look(page, 'reports-initech');
    });

    await step('by month, grouped by model, tokens charted', async () => {
        await page.getByLabel('By', { exact: true }).selectOption('month');
        await page.getByRole('checkbox', { name: 'Model', exact: true }).check();
        await page.getByLabel('Chart metric', { exact: true }).selectOption('tokens');
        await page.getByRole('button', { name: 'Show' }).click();
        await page.waitForURL(/granularity=month/);
        await expectText(page.locator('main .subtitle'), `Initech · usage by month · times in ${ZONE}`);
        const texts = await chartTexts(page);
        for (const t of [`Month (${ZONE})`, 'tokens', new Intl.DateTimeFormat('en-US', { month: 'short', year: 'numeric', timeZone: ZONE }).format(DEMO_NOW)]) {
            assert(texts.includes(t), `no "${t}" on the chart's axes: ${JSON.stringify(texts)}`);
        }
        const headers = (await panelTable(page, 'Rows').locator('thead th').allTextContents()).map(normalize);
        assertEqual(
            JSON.stringify(headers),
            JSON.stringify(['When', 'Model', 'cost_usd', 'images', 'tokens', 'Events']),
            'the columns',
        );
        const table = await rows(panelTable(page, 'Rows'));
        assertEqual(
            JSON.stringify(table),
            JSON.stringify([
                [MONTH, 'gpt-4o', COST, '—', TOKENS, String(calls)],
                [MONTH, 'gpt-image-1', '—', '46 images', '—', '1'],
            ]),
            'the rows',
        );
        console.log(`gpt-4o row: ${table[0].join(' | ')}`);
        await look(page, 'reports-initech-by-model');
    });

    await step('the CSV download: the same report', async () => {
        const [download] = await Promise.all([
            page.waitForEvent('download'),
            page.getByRole('link', { name: 'Download CSV' }).click(),
        ]);
        assert(/^usage-[0-9a-f-]{36}-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv$/.test(download.suggestedFilename()), download.suggestedFilename());
        const text = await readFile(await download.path(), 'utf8');
        const lines = text.trimEnd().split('\r\n');
        assertEqual(
            lines[0],
            'bucket_start,metric,provider,model,operation,user,amount,events,bucket,user_name,user_email',
            'the header',
        );
        const tokenLine = lines.find((l) => l.split(',')[1] === 'tokens' && l.split(',')[3] === 'gpt-4o');
        assert(tokenLine, `no gpt-4o tokens line in ${text}`);
        const f = tokenLine.split(',');
        assertEqual(f[8], MONTH, 'its bucket');
        assertEqual(f[6], String(tokens), 'its amount');
        assertEqual(lines.length, 1 + 3, 'lines: the header, gpt-4o cost and tokens, the images');
        console.log(`csv gpt-4o tokens: ${f[8]} ${f[6]}`);
    });
});
