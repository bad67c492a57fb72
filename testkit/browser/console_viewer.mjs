// The viewer: dan, a viewer in Acme, sees Acme's usage with its limit,
// and its members without any control to change a role or remove
// someone; the only form he gets is the one to leave.

import { assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, panelTable, rows, selector, signIn, switchTo } from './console_common.mjs';

await scenario('console-viewer', async () => {
    const page = await signIn('dan');

    await step('his one organization', async () => {
        const orgs = await rows(panelTable(page, 'Organizations'));
        assertEqual(JSON.stringify(orgs), JSON.stringify([['Acme', 'acme', 'viewer']]), 'the organizations table');
        assertEqual(await selector(page).getByRole('link').count(), 1, 'links in the org selector');
        // No operator sections for him.
        assertEqual(await page.getByRole('navigation', { name: 'Platform operator' }).count(), 0, 'operator navigation');
        await look(page, 'viewer-organizations');
    });

    await step("Acme's usage, with its limit", async () => {
        await switchTo(page, 'Acme');
        const limits = await rows(panelTable(page, 'This period'));
        assertEqual(
            JSON.stringify(limits),
            JSON.stringify([
                ['tokens', 'monthly', 'organization', '0 tokens', '0 tokens', '10,000 tokens hard', '10,000 tokens', 'OK 0 %', '2026-12-01 00:00 UTC'],
            ]),
            "Acme's usage lines",
        );
        await expectText(page.getByRole('region', { name: 'Features' }), 'veo_avatars on');
        // Other members' usage is for admins and owners.
        assertEqual(await page.getByRole('region', { name: 'Top members this month' }).count(), 0, 'top members panel');
        await look(page, 'viewer-acme-usage');
    });

    await step("Acme's members, without controls", async () => {
        await page.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Members' }).click();
        await page.waitForURL(/\/members$/);
        await expectText(page.locator('main .subtitle'), 'Acme · you are viewer');
        const members = await rows(panelTable(page, 'People in Acme'));
        assertEqual(JSON.stringify(members.map((r) => r[1])), JSON.stringify(['owner', 'member', 'viewer']), 'the roles in Acme');
        const main = page.getByRole('main');
        assertEqual(await main.getByRole('combobox').count(), 0, 'role selects');
        assertEqual(await main.getByRole('button', { name: 'Change role' }).count(), 0, 'Change role buttons');
        assertEqual(await main.getByRole('button', { name: /^Remove / }).count(), 0, 'Remove buttons');
        const buttons = await main.getByRole('button').allTextContents();
        assertEqual(JSON.stringify(buttons.map((b) => b.trim())), JSON.stringify(['Leave Acme']), 'the buttons on the page');
        await look(page, 'viewer-acme-members');
    });
});
