// Plans: olivia (the operator) creates a Free and a Pro plan in the
// catalog, puts Acme on Free with an override that lapses on 1 December
// (12 000 tokens a month instead of Free's 1 000), starts a trial of Pro
// for Initech that falls to Free, edits Pro into version 2 (the form starts
// from version 1), and migrates every organization on Pro 1 to Pro 2.
// erin, a member of Initech, then reads Initech's plan page: Pro 2 during
// a trial, and where each entry comes from. The test checks the catalog,
// the assignments and the override on the server afterwards.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, signIn, switchTo } from './console_common.mjs';

/** The sentences of the plan section of an operator's organization page. */
async function planSummary(page) {
    const texts = await page.getByRole('region', { name: 'Plan', exact: true }).locator('p:not(.hint)').allTextContents();
    return texts.map(normalize);
}

/** Opens organization `name`'s page from the operator's list. */
async function openOrganization(page, name) {
    await page.getByRole('navigation', { name: 'Platform operator' }).getByRole('link', { name: 'Organizations', exact: true }).click();
    await page.waitForURL(/\/console\/operator\/orgs$/);
    await page.getByRole('main').getByRole('link', { name, exact: true }).click();
    await page.waitForURL(/\/console\/operator\/orgs\/[0-9a-f-]{36}$/);
    await expectText(page.getByRole('heading', { level: 1 }), name);
}

/** Opens the catalog from the operator's navigation. */
async function openCatalog(page) {
    await page.getByRole('navigation', { name: 'Platform operator' }).getByRole('link', { name: 'Plans', exact: true }).click();
    await page.waitForURL(/\/console\/operator\/plans$/);
    await expectText(page.getByRole('heading', { level: 1 }), 'Plans');
}

/** Fills and submits the create form. */
async function createPlan(page, { key, name, features = '', limits = '', rateLimits = '' }) {
    await page.getByLabel('Key', { exact: true }).fill(key);
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Features, one a line').fill(features);
    await page.getByLabel('Usage limits, one a line').fill(limits);
    await page.getByLabel('Rate limits, one a line').fill(rateLimits);
    await page.getByRole('button', { name: 'Create plan' }).click();
    await page.waitForURL(/\/console\/operator\/plans\?done=plan-created$/);
    await expectText(page.getByRole('status'), 'The plan was created: version 1.');
}

await scenario('console-plans', async () => {
    const olivia = await signIn('olivia');

    await step('olivia creates Free and Pro in the empty catalog', async () => {
        await openCatalog(olivia);
        await expectText(olivia.getByRole('region', { name: 'Catalog' }), 'No plans yet');
        await createPlan(olivia, { key: 'free', name: 'Free', limits: 'monthly_tokens 1000' });
        await createPlan(olivia, {
            key: 'pro',
            name: 'Pro',
            features: 'veo_avatars\nexports',
            limits: 'monthly_tokens 100000',
            rateLimits: 'minute_requests 600',
        });
        const plans = await rows(panelTable(olivia, 'Catalog'));
        assertEqual(
            JSON.stringify(plans),
            JSON.stringify([
                ['free', 'Free', '1', 'none', 'monthly_tokens 1000'],
                ['pro', 'Pro', '1', 'veo_avatars, exports', 'monthly_tokens 100000, minute_requests 600'],
            ]),
            'the catalog',
        );
        await look(olivia, 'plans-catalog');
    });

    await step('olivia puts Acme on Free', async () => {
        await openOrganization(olivia, 'Acme');
        assertEqual(
            JSON.stringify(await planSummary(olivia)),
            JSON.stringify(["No plan: only the organization's own rows (the overrides) apply."]),
            'before',
        );
        await olivia.locator('#assign-plan').selectOption('free@1');
        await olivia.getByRole('button', { name: 'Assign plan' }).click();
        await olivia.waitForURL(/\?done=plan-assigned$/);
        await expectText(olivia.getByRole('status'), 'The plan was assigned.');
        assertEqual(
            JSON.stringify(await planSummary(olivia)),
            JSON.stringify(['On free v1 since 2026-11-24 03:00 UTC.']),
            'after',
        );
        await look(olivia, 'plans-acme-free');
    });

    await step('olivia gives Acme 12 000 tokens a month until 1 December', async () => {
        await olivia.locator('#limit-type').fill('monthly_tokens');
        await olivia.locator('#limit-value').fill('12000');
        await olivia.locator('#limit-expires').fill('2026-12-01');
        await olivia.getByRole('button', { name: 'Set limit' }).click();
        await olivia.waitForURL(/\?done=limit$/);
        const limits = await rows(panelTable(olivia, 'Limits'));
        assertEqual(limits.length, 1, `limit rows: ${JSON.stringify(limits)}`);
        assertEqual(
            JSON.stringify(limits[0].slice(0, 6)),
            JSON.stringify(['monthly_tokens', 'org-wide', '12000', 'hard', '0 %', '2026-12-01 00:00 UTC']),
            'the override',
        );
        const effective = await rows(panelTable(olivia, 'In effect now'));
        const tokens = effective.find((r) => r[1] === 'monthly_tokens');
        assertEqual(
            JSON.stringify(tokens),
            JSON.stringify(['limit', 'monthly_tokens', 'organization', '12000 hard', 'override until 2026-12-01 00:00 UTC']),
            'the effective token limit',
        );
        console.log(`acme's tokens: ${tokens.join(' | ')}`);
        await look(olivia, 'plans-acme-override');
    });

    await step('olivia starts a trial of Pro for Initech, falling to Free', async () => {
        await openOrganization(olivia, 'Initech');
        await olivia.getByLabel('Trial plan', { exact: true }).selectOption('pro@1');
        await olivia.getByLabel('Ends on', { exact: true }).fill('2026-12-08');
        await olivia.getByLabel('Then', { exact: true }).selectOption('free@1');
        await olivia.getByRole('button', { name: 'Start trial' }).click();
        await olivia.waitForURL(/\?done=trial$/);
        await expectText(olivia.getByRole('status'), 'The trial started.');
        assertEqual(
            JSON.stringify(await planSummary(olivia)),
            JSON.stringify([
                'On pro v1 since 2026-11-24 12:00 Asia/Tokyo.',
                'A trial, until 2026-12-08 00:00 Asia/Tokyo; then free v1.',
            ]),
            "Initech's plan",
        );
        await look(olivia, 'plans-initech-trial');
    });

    await step('olivia edits Pro: version 2 doubles its tokens', async () => {
        await openCatalog(olivia);
        await olivia.getByRole('link', { name: 'pro', exact: true }).click();
        await olivia.waitForURL(/\/console\/operator\/plans\/pro$/);
        await expectText(olivia.getByRole('heading', { level: 1 }), 'Pro');
        const limits = olivia.getByLabel('Usage limits, one a line');
        assertEqual(await limits.inputValue(), 'monthly_tokens 100000 hard\n', 'the form starts from version 1');
        assertEqual(await olivia.getByLabel('Features, one a line').inputValue(), 'veo_avatars\nexports\n', 'its features');
        await limits.fill('monthly_tokens 200000');
        await olivia.getByRole('button', { name: 'Create version 2' }).click();
        await olivia.waitForURL(/\/console\/operator\/plans\/pro\?done=version-created&version=2$/);
        await expectText(olivia.getByRole('status'), 'Version 2 was created.');
        const v2 = await rows(panelTable(olivia, 'Version 2'));
        assert(
            v2.some((r) => JSON.stringify(r) === JSON.stringify(['limit', 'monthly_tokens', '200000 hard'])),
            `version 2: ${JSON.stringify(v2)}`,
        );
        const v1 = await rows(panelTable(olivia, 'Version 1'));
        assert(
            v1.some((r) => JSON.stringify(r) === JSON.stringify(['limit', 'monthly_tokens', '100000 hard'])),
            `version 1 unchanged: ${JSON.stringify(v1)}`,
        );
        await look(olivia, 'plans-pro-v2');
    });

    await step('olivia migrates every organization on Pro 1 to Pro 2', async () => {
        const migrate = olivia.getByRole('region', { name: 'Migrate organizations' });
        await migrate.getByLabel('From version').selectOption('1');
        await migrate.getByLabel('To version').selectOption('2');
        await migrate.getByRole('button', { name: 'Migrate' }).click();
        await olivia.waitForURL(/\/console\/operator\/plans\?done=migrated&moved=1$/);
        await expectText(olivia.getByRole('status'), '1 organization moved.');
        console.log(`migrated: ${normalize(await olivia.getByRole('status').textContent())}`);
        await look(olivia, 'plans-migrated');
    });

    await step("erin reads Initech's plan page", async () => {
        const erin = await signIn('erin');
        await switchTo(erin, 'Initech');
        await erin.getByRole('navigation', { name: 'Sections of Initech' }).getByRole('link', { name: 'Plan', exact: true }).click();
        await erin.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/plan$/);
        await expectText(erin.getByRole('heading', { level: 1 }), 'Plan');
        const summary = (await erin.getByRole('region', { name: 'Your plan' }).locator('p').allTextContents()).map(normalize);
        assertEqual(
            JSON.stringify(summary),
            JSON.stringify([
                'On pro v2 since 2026-11-24 12:00 Asia/Tokyo.',
                'A trial, until 2026-12-08 00:00 Asia/Tokyo; then free v1.',
            ]),
            'her plan',
        );
        const includes = await rows(panelTable(erin, 'What it includes'));
        const line = (entry) => includes.find((r) => r[1] === entry);
        assertEqual(JSON.stringify(line('veo_avatars')), JSON.stringify(['feature', 'veo_avatars', 'organization', 'on', 'plan pro v2']), 'a feature of the plan');
        assertEqual(JSON.stringify(line('brand_kits')), JSON.stringify(['feature', 'brand_kits', 'organization', 'on', 'override']), "Initech's own feature");
        assertEqual(
            JSON.stringify(line('monthly_tokens')),
            JSON.stringify(['limit', 'monthly_tokens', 'organization', '1000000 hard', 'override']),
            "Initech's own token limit, above the plan's",
        );
        assertEqual(
            JSON.stringify(line('minute_requests')),
            JSON.stringify(['rate limit', 'minute_requests', 'organization', '600 per minute, burst 600, hard', 'plan pro v2']),
            "the plan's rate limit",
        );
        for (const r of includes) {
            console.log(`initech includes: ${r.join(' | ')}`);
        }
        await look(erin, 'plans-member-initech');
    });
});
