// The audit log: alice (Acme's owner) makes bob an admin on Acme's members
// page, then opens Acme's audit log from the sections navigation and finds
// the change there, done by her (by name) to bob (by name), with the old
// and the new role. olivia (the operator) opens the operator's audit log,
// which lists every organization's changes: the same change, under Acme;
// following Acme's link narrows the log to Acme. testkit/tests/console/
// browser.rs checks the role and the log on the server afterwards.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, signIn } from './console_common.mjs';

/** The rows of the "Changes" table whose cells include every one of `cells`. */
async function changesWith(page, cells) {
    const all = await rows(panelTable(page, 'Changes'));
    return all.filter((r) => cells.every((c) => r.includes(c)));
}

await scenario('console-audit', async () => {
    const alice = await signIn('alice');

    await step('alice makes bob an admin', async () => {
        await alice.getByRole('navigation', { name: 'Organizations', exact: true }).getByRole('link', { name: /^Acme / }).click();
        await alice.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Members' }).click();
        await alice.waitForURL(/\/members$/);
        await alice.getByLabel('New role for Bob Baker', { exact: true }).selectOption('admin');
        const row = alice.locator('main tbody tr').filter({ hasText: 'Bob Baker' });
        await row.getByRole('button', { name: 'Change role' }).click();
        await alice.waitForURL(/\/members\?done=role$/);
        await expectText(alice.getByRole('status'), 'The role was changed.');
    });

    await step("alice reads Acme's audit log", async () => {
        await alice.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Audit log' }).click();
        await alice.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/audit$/);
        await expectText(alice.getByRole('heading', { level: 1 }), 'Audit log');
        await expectText(alice.locator('main .subtitle'), 'Acme · every change, newest first · times in UTC');
        const current = await alice.getByRole('navigation', { name: 'Sections of Acme' }).locator('a[aria-current="page"]').allTextContents();
        assertEqual(JSON.stringify(current.map(normalize)), JSON.stringify(['Audit log']), 'the section marked current');
        const headers = await panelTable(alice, 'Changes').locator('thead th').allTextContents();
        assertEqual(
            JSON.stringify(headers.map(normalize)),
            JSON.stringify(['When', 'Who', 'Action', 'What', 'Changes', 'Request']),
            "the columns of an organization's log",
        );
        const changed = await changesWith(alice, [
            'Alice Archer alice@acme.example',
            'member.updated',
            'Bob Baker bob@acme.example',
            'role: member → admin',
        ]);
        assertEqual(changed.length, 1, 'rows of the role change');
        // The change happened at the demo's clock: 2026-11-24 03:00 UTC.
        assert(changed[0][0].startsWith('2026-11-24'), `when: ${changed[0][0]}`);
        console.log(`acme's change: ${changed[0].slice(1, 5).join(' | ')}`);
        const all = await rows(panelTable(alice, 'Changes'));
        assert(all.some((r) => r[2] === 'organization.created'), `Acme's creation in ${JSON.stringify(all)}`);
        // Nothing of another organization: Carol owns Globex and Initech.
        assert(!all.some((r) => r.join(' ').includes('Carol Chen')), `another org's changes: ${JSON.stringify(all)}`);
        await look(alice, 'audit-acme');
    });

    await step("alice filters Acme's log to her own changes", async () => {
        // The actor's cell links to the log filtered to that actor.
        const row = alice.locator('main tbody tr').filter({ hasText: 'member.updated' }).filter({ hasText: 'Bob Baker' });
        await row.getByRole('link', { name: /^Alice Archer/ }).click();
        await alice.waitForURL(/\/audit\?(.*&)?actor=user(%3A|:)[0-9a-f-]{36}/);
        const mine = await rows(panelTable(alice, 'Changes'));
        assert(mine.length >= 1, 'her changes');
        assert(mine.every((r) => r[1] === 'Alice Archer alice@acme.example'), `other actors: ${JSON.stringify(mine)}`);
        assert(mine.some((r) => r[4] === 'role: member → admin'), `the role change in ${JSON.stringify(mine)}`);
        await look(alice, 'audit-acme-by-alice');
    });

    await step("olivia reads the operator's audit log", async () => {
        const olivia = await signIn('olivia');
        await olivia.getByRole('navigation', { name: 'Platform operator' }).getByRole('link', { name: 'Audit log' }).click();
        await olivia.waitForURL(/\/console\/operator\/audit$/);
        await expectText(olivia.getByRole('heading', { level: 1 }), 'Audit log');
        await expectText(olivia.locator('main .subtitle'), 'Every organization · newest first · times in UTC');
        const headers = await panelTable(olivia, 'Changes').locator('thead th').allTextContents();
        assertEqual(
            JSON.stringify(headers.map(normalize)),
            JSON.stringify(['When', 'Organization', 'Who', 'Action', 'What', 'Changes', 'Request']),
            "the columns of the operator's log",
        );
        const changed = await changesWith(olivia, [
            'Acme',
            'Alice Archer alice@acme.example',
            'member.updated',
            'Bob Baker bob@acme.example',
            'role: member → admin',
        ]);
        assertEqual(changed.length, 1, "rows of Acme's role change");
        const all = await rows(panelTable(olivia, 'Changes'));
        const orgs = [...new Set(all.map((r) => r[1]))].sort();
        assertEqual(JSON.stringify(orgs), JSON.stringify(['Acme', 'Globex', 'Initech']), 'the organizations in the log');
        console.log(`operator's organizations: ${orgs.join(', ')}`);
        await look(olivia, 'audit-operator');

        // Acme's link narrows the log to Acme.
        await olivia.locator('main tbody tr').filter({ hasText: 'member.updated' }).first().getByRole('link', { name: 'Acme', exact: true }).click();
        await olivia.waitForURL(/\/operator\/audit\?org=[0-9a-f-]{36}$/);
        await expectText(olivia.locator('main .subtitle'), 'Acme · newest first · times in UTC');
        const acme = await rows(panelTable(olivia, 'Changes'));
        assert(acme.length >= 1, "Acme's changes");
        assert(acme.every((r) => r[1] === 'Acme'), `other organizations: ${JSON.stringify(acme)}`);
        assert(acme.some((r) => r[5] === 'role: member → admin'), `the role change in ${JSON.stringify(acme)}`);
        await look(olivia, 'audit-operator-acme');
    });
});
