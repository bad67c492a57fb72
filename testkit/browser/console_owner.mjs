// The owner: alice signs in, sees her organizations, switches between
// them with the org selector, opens Acme's members (by name) and makes bob
// (the only member) an admin with the form; the page after the redirect shows
// the new role. testkit/tests/console/browser.rs checks the role on the
// server afterwards, and that the row changed was bob's.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, signIn, switchTo } from './console_common.mjs';

await scenario('console-owner', async () => {
    const page = await signIn('alice');

    await step('her organizations, with her role in each', async () => {
        const orgs = await rows(panelTable(page, 'Organizations'));
        assertEqual(
            JSON.stringify(orgs),
            JSON.stringify([
                ['Acme', 'acme', 'owner'],
                ['Globex', 'globex', 'viewer'],
                ['Initech', 'initech', 'viewer'],
            ]),
            'the organizations table',
        );
        await look(page, 'owner-organizations');
    });

    await step('switch to Globex with the org selector', async () => {
        await switchTo(page, 'Globex');
        await expectText(page.locator('main .subtitle'), 'Globex · periods in UTC');
        await expectText(page.getByRole('region', { name: 'This period' }), 'No usage and no limits yet in this period.');
        await expectText(page.getByRole('navigation', { name: 'Sections of Globex' }), 'Usage and limits');
        await look(page, 'owner-globex-usage');
    });

    await step('switch back to Acme', async () => {
        await switchTo(page, 'Acme');
        const limits = await rows(panelTable(page, 'This period'));
        assertEqual(
            JSON.stringify(limits),
            JSON.stringify([
                ['tokens', 'monthly', 'organization', '0 tokens', '0 tokens', '10,000 tokens hard', '10,000 tokens', 'OK 0 %', '2026-12-01 00:00 UTC'],
            ]),
            "Acme's usage lines",
        );
        await look(page, 'owner-acme-usage');
    });

    let bob = null;
    await step("open Acme's members", async () => {
        await page.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Members' }).click();
        await page.waitForURL(/\/members$/);
        await expectText(page.locator('main .subtitle'), 'Acme · you are owner');
        const members = await rows(panelTable(page, 'People in Acme'));
        assertEqual(
            JSON.stringify(members.map((r) => r[1])),
            JSON.stringify(['owner', 'member', 'viewer']),
            'the roles in Acme',
        );
        // People by name and email (dan gave no name: his email), the
        // full id only for screen readers.
        const people = members.map((r) => r[0].split(' (')[0]);
        assertEqual(
            JSON.stringify(people),
            JSON.stringify(['Alice Archer alice@acme.example you', 'Bob Baker bob@acme.example', 'dan@acme.example']),
            'the people in Acme',
        );
        bob = 'Bob Baker';
        console.log(`the member: ${bob}`);
        await look(page, 'owner-acme-members');
    });

    await step('make the member an admin', async () => {
        await page.getByLabel(`New role for ${bob}`, { exact: true }).selectOption('admin');
        const row = page.locator('main tbody tr').filter({ hasText: bob });
        await row.getByRole('button', { name: 'Change role' }).click();
        await page.waitForURL(/\/members\?done=role$/);
        await expectText(page.getByRole('status'), 'The role was changed.');
        const members = await rows(panelTable(page, 'People in Acme'));
        const changed = members.filter((r) => r[0].startsWith(`${bob} `));
        assertEqual(changed.length, 1, `rows of ${bob}`);
        assertEqual(changed[0][1], 'admin', `${bob}'s role after the change`);
        assertEqual(
            JSON.stringify(members.map((r) => r[1])),
            JSON.stringify(['owner', 'admin', 'viewer']),
            'the roles in Acme after the change',
        );
        // The picker starts at the member's role, among the roles the owner may set.
        const picker = page.getByLabel(`New role for ${bob}`, { exact: true });
        const offered = await picker.locator('option').allTextContents();
        assertEqual(JSON.stringify(offered.map(normalize)), JSON.stringify(['owner', 'admin', 'member', 'viewer']), 'roles offered');
        assertEqual(await picker.inputValue(), 'admin', 'where the picker starts');
        await look(page, 'owner-acme-members-role-changed');
    });
});
