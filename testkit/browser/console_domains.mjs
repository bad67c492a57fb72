// Verified domains: the operator has recorded acme.example for Acme
// (testkit/tests/console/browser.rs does it through the facade first, and
// gives frank, a member of nothing, the confirmed email
// frank@acme.example). alice (Acme's owner) opens Acme's verified domains
// from the sections navigation, finds nobody may join on their own, and
// opens joining to viewers. frank opens "Join an organization", finds Acme
// through acme.example as a viewer, joins, and lands on Acme's usage page
// with Acme in his org selector. The test checks his membership on the
// server afterwards.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, selector, signIn } from './console_common.mjs';

await scenario('console-domains', async () => {
    const alice = await signIn('alice');

    await step("alice opens Acme's verified domains", async () => {
        await alice.getByRole('navigation', { name: 'Organizations', exact: true }).getByRole('link', { name: /^Acme / }).click();
        await alice.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Verified domains' }).click();
        await alice.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/domains$/);
        await expectText(alice.getByRole('heading', { level: 1 }), 'Verified domains');
        await expectText(alice.locator('main .subtitle'), 'Acme · who may join on their own');
        const domains = await rows(panelTable(alice, 'Joining through a verified domain'));
        assertEqual(domains.length, 1, `domains: ${JSON.stringify(domains)}`);
        assertEqual(
            JSON.stringify(domains[0].slice(0, 3)),
            JSON.stringify(['acme.example', 'not included', 'nobody joins on their own']),
            'the domain row',
        );
        const picker = alice.getByLabel('Who may join through acme.example', { exact: true });
        assertEqual(await picker.inputValue(), 'off', 'where the picker starts');
        const offered = await picker.locator('option').allTextContents();
        assertEqual(
            JSON.stringify(offered.map(normalize)),
            JSON.stringify(['nobody joins on their own', 'join as viewer', 'join as member']),
            'the choices',
        );
        await look(alice, 'domains-acme');
    });

    await step('alice opens joining to viewers', async () => {
        await alice.getByLabel('Who may join through acme.example', { exact: true }).selectOption('viewer');
        await alice.getByRole('button', { name: 'Save for acme.example' }).click();
        await alice.waitForURL(/\/domains\?done=auto-join$/);
        await expectText(alice.getByRole('status'), 'The join setting was saved.');
        const domains = await rows(panelTable(alice, 'Joining through a verified domain'));
        assertEqual(domains[0][2], 'people join on their own as viewers', 'the setting now');
        assertEqual(
            await alice.getByLabel('Who may join through acme.example', { exact: true }).inputValue(),
            'viewer',
            'where the picker starts now',
        );
        await look(alice, 'domains-acme-viewers');
    });

    await step('frank finds Acme on the join page and joins', async () => {
        const frank = await signIn('frank');
        assertEqual(await selector(frank).getByRole('link', { name: /^Acme / }).count(), 0, 'Acme in his selector before');
        await frank.getByRole('link', { name: 'Join an organization' }).click();
        await frank.waitForURL(/\/console\/join$/);
        await expectText(frank.getByRole('heading', { level: 1 }), 'Join an organization');
        const open = await rows(panelTable(frank, 'You may join'));
        assertEqual(
            JSON.stringify(open.map((r) => r.slice(0, 3))),
            JSON.stringify([['Acme acme', 'acme.example', 'viewer']]),
            'the organizations open to him',
        );
        await look(frank, 'domains-join');

        await frank.getByRole('button', { name: 'Join Acme' }).click();
        await frank.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/usage$/);
        const org = /\/orgs\/([0-9a-f-]{36})\/usage$/.exec(frank.url())[1];
        console.log(`he joined: ${org}`);
        await expectText(frank.getByRole('heading', { level: 1 }), 'Usage and limits');
        await expectText(frank.locator('main .subtitle'), 'Acme · periods in UTC');
        const current = await selector(frank).locator('a[aria-current="true"]').allTextContents();
        assertEqual(JSON.stringify(current.map(normalize)), JSON.stringify(['Acme viewer']), 'the selector marks Acme, his role viewer');
        await look(frank, 'domains-joined');

        // Nothing left to join.
        await frank.getByRole('link', { name: 'Join an organization' }).click();
        await frank.waitForURL(/\/console\/join$/);
        const left = normalize(await frank.getByRole('region', { name: 'You may join' }).textContent());
        assert(left.includes('No organization is open to your email address.'), `the join page after: ${left}`);
    });
});
