// The platform operator: olivia opens the overview of the organizations
// nearest their limits, searches for Initech, and on its page turns its
// `brand_kits` feature on with the toggle; erin, a member of Initech, sees
// no feature on its usage page before, and `brand_kits` on after.
//
// It starts from `brand_kits` switched off for Initech (the demo seeds it
// on): testkit/tests/console/browser.rs turns it off through the operator
// handle first, and checks on the server afterwards that it is on.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, signIn, switchTo } from './console_common.mjs';

const FEATURE = 'brand_kits';

/** The feature list of a usage page, as text. */
async function featuresOn(page) {
    const panel = page.getByRole('region', { name: 'Features', exact: true });
    return (await panel.getByRole('listitem').allTextContents()).map(normalize);
}

await scenario('console-operator', async () => {
    const erin = await signIn('erin');
    await step("before: Initech's usage page shows no feature on", async () => {
        await switchTo(erin, 'Initech');
        await expectText(erin.getByRole('region', { name: 'Features', exact: true }), 'No features are turned on for Initech.');
        assertEqual(JSON.stringify(await featuresOn(erin)), '[]', 'features listed');
        await look(erin, 'operator-member-usage-before');
    });

    const page = await signIn('olivia');
    await step('the operator belongs to no organization but has her sections', async () => {
        await expectText(page.getByRole('region', { name: 'Organizations' }), 'You belong to no organization yet.');
        await expectText(page.getByRole('navigation', { name: 'Platform operator' }), 'Nearest their limits');
        await look(page, 'operator-start');
    });

    await step('the overview: the organizations nearest their limits', async () => {
        await page.getByRole('link', { name: 'Nearest their limits' }).click();
        await page.waitForURL(/\/console\/operator$/);
        await expectText(page.getByRole('heading', { level: 1 }), 'Nearest their limits');
        const nearest = await rows(panelTable(page, 'Organizations'));
        assertEqual(
            JSON.stringify(nearest),
            JSON.stringify([
                ['Initech initech', 'monthly_images', '92 %', 'Warning', '2026-12-01 00:00 Asia/Tokyo'],
                ['Acme acme', 'monthly_tokens', '0 %', 'OK', '2026-12-01 00:00 UTC'],
            ]),
            'the overview, tightest first',
        );
        await look(page, 'operator-overview');
    });

    await step('search for Initech', async () => {
        await page.getByRole('navigation', { name: 'Platform operator' }).getByRole('link', { name: 'Organizations' }).click();
        await page.waitForURL(/\/console\/operator\/orgs$/);
        const all = await rows(panelTable(page, 'All organizations'));
        assertEqual(all.length, 3, `organizations listed before the search (${JSON.stringify(all)})`);
        await page.getByRole('searchbox', { name: 'Name or slug' }).fill('Initech');
        await page.getByRole('button', { name: 'Search' }).click();
        await page.waitForURL(/\/console\/operator\/orgs\?q=Initech$/);
        const found = await rows(panelTable(page, 'Matching “Initech”'));
        assertEqual(
            JSON.stringify(found),
            JSON.stringify([['Initech', 'initech', 'monthly_images', '92 %']]),
            'the search result',
        );
        await look(page, 'operator-search-initech');
    });

    const toggle = (state) => page.getByRole('button', { name: `Turn ${FEATURE} ${state}`, exact: true });
    await step("Initech's page: brand_kits is off", async () => {
        await page.getByRole('main').getByRole('link', { name: 'Initech', exact: true }).click();
        await page.waitForURL(/\/console\/operator\/orgs\/[0-9a-f-]{36}$/);
        await expectText(page.getByRole('heading', { level: 1 }), 'Initech');
        await expectText(page.locator('main .subtitle'), 'initech · Asia/Tokyo · ');
        const features = await rows(panelTable(page, 'Features'));
        assertEqual(features.length, 1, `feature rows (${JSON.stringify(features)})`);
        assertEqual(features[0][0], FEATURE, 'the feature');
        assert(features[0][1].startsWith(`off Turn ${FEATURE} on`), `its state: ${JSON.stringify(features[0][1])}`);
        assertEqual(await toggle('off').count(), 0, 'a button to turn it off');
        await look(page, 'operator-initech-feature-off');
    });

    await step('turn brand_kits on', async () => {
        await toggle('on').click();
        await page.waitForURL(/\/console\/operator\/orgs\/[0-9a-f-]{36}\?done=feature$/);
        await expectText(page.getByRole('status'), 'The feature was changed.');
        const features = await rows(panelTable(page, 'Features'));
        assert(features[0][1].startsWith(`on Turn ${FEATURE} off`), `its state: ${JSON.stringify(features[0][1])}`);
        assertEqual(await toggle('on').count(), 0, 'a button to turn it on');
        await look(page, 'operator-initech-feature-on');
    });

    await step("after: Initech's usage page shows brand_kits on", async () => {
        await erin.reload();
        assertEqual(JSON.stringify(await featuresOn(erin)), JSON.stringify([`${FEATURE} on`]), 'features listed');
        await look(erin, 'operator-member-usage-after');
    });
});
