// Invitations: alice (owner of Acme) invites frank@example.com from
// Acme's members page and copies the link the page shows once; frank,
// signed in with that confirmed email, opens it (the page names no
// organization yet), accepts, and Acme's members list him by name. dan,
// a viewer, finds no invite form, and a post he forges with his own form
// token is refused (403). alice makes a one-use link; nina uses it; erin
// opening it next is refused, and the refusal names no organization.
// testkit/tests/console/invitations.rs checks the memberships on the
// server afterwards.

import { assert, assertEqual, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, signIn } from './console_common.mjs';

/** Opens Acme's members page from the selector's sidebar navigation. */
async function acmeMembers(page) {
    await page.getByRole('navigation', { name: 'Organizations', exact: true }).getByRole('link', { name: /^Acme / }).click();
    await page.getByRole('navigation', { name: 'Sections of Acme' }).getByRole('link', { name: 'Members' }).click();
    await page.waitForURL(/\/members$/);
}

/** The invitation link a created page shows, as a path. */
async function inviteLink(page) {
    const url = await page.getByLabel('Invitation link', { exact: true }).inputValue();
    assert(/^\/console\/invitations\/accept\?token=[0-9a-f]{64}$/.test(url), `the link ${url}`);
    return url;
}

await scenario('console-invitations', async () => {
    const alice = await signIn('alice');
    let link = null;

    await step('alice invites frank by email', async () => {
        await acmeMembers(alice);
        const panel = alice.getByRole('region', { name: 'Invite people to Acme' });
        const roles = await panel.getByLabel('Role').first().locator('option').allTextContents();
        assertEqual(JSON.stringify(roles.map(normalize)), JSON.stringify(['owner', 'admin', 'member', 'viewer']), 'roles an owner may invite');
        await panel.getByLabel('Email address').fill('frank@example.com');
        await look(alice, 'invite-form');
        await panel.getByRole('button', { name: 'Invite by email' }).click();
        await expectText(alice.getByRole('heading', { level: 1 }), 'Invitation created');
        await expectText(alice.getByRole('main'), 'An invitation for frank@example.com as member');
        link = await inviteLink(alice);
        await look(alice, 'invite-created');
    });

    await step('frank opens the link and accepts', async () => {
        const frank = await signIn('frank');
        await frank.goto(link);
        await expectText(frank.getByRole('heading', { level: 1 }), 'Accept an invitation');
        const main = normalize(await frank.getByRole('main').textContent());
        assert(!main.includes('Acme'), `the accept page names the organization: ${main}`);
        assert(main.includes('Frank Fischer'), `the accept page names who accepts: ${main}`);
        await look(frank, 'invite-accept');
        await frank.getByRole('button', { name: 'Accept the invitation' }).click();
        await frank.waitForURL(/\/members\?done=joined$/);
        await expectText(frank.getByRole('status'), 'You accepted the invitation and joined.');
        const people = (await rows(panelTable(frank, 'People in Acme'))).map((r) => r[0].split(' (')[0]);
        assert(people.includes('Frank Fischer frank@example.com you'), `the people in Acme: ${JSON.stringify(people)}`);
        await look(frank, 'invite-joined');
    });

    await step('dan, a viewer, has no invite form; a forged post is refused', async () => {
        const dan = await signIn('dan');
        await acmeMembers(dan);
        assertEqual(await dan.getByRole('region', { name: 'Invite people to Acme' }).count(), 0, 'invite panels');
        assertEqual(await dan.getByRole('main').getByRole('button', { name: /Invite|Create a link|Revoke|Resend/ }).count(), 0, 'invite buttons');
        const csrf = await dan.locator('input[name="csrf"]').first().inputValue();
        const action = new URL(dan.url()).pathname.replace(/\/members$/, '/invitations');
        const forged = await dan.request.post(action, {
            form: { csrf, kind: 'link', role: 'owner', max_uses: '100' },
            headers: { origin: new URL(dan.url()).origin },
            maxRedirects: 0,
        });
        console.log(`forged invite: ${forged.status()}`);
        assertEqual(forged.status(), 403, 'a forged invite');
        await look(dan, 'invite-viewer-members');
    });

    await step('a one-use link, used by nina, is refused to erin', async () => {
        await acmeMembers(alice);
        const panel = alice.getByRole('region', { name: 'Invite people to Acme' });
        const linkForm = panel.locator('form').filter({ has: alice.getByRole('button', { name: 'Create a link' }) });
        await linkForm.getByLabel('Role').selectOption('viewer');
        await linkForm.getByLabel('Uses').fill('1');
        await linkForm.getByRole('button', { name: 'Create a link' }).click();
        await expectText(alice.getByRole('main'), 'A link for anyone to join as viewer');
        const oneUse = await inviteLink(alice);
        await look(alice, 'invite-link-created');

        const nina = await signIn('nina');
        await nina.goto(oneUse);
        await nina.getByRole('button', { name: 'Accept the invitation' }).click();
        await nina.waitForURL(/\/members\?done=joined$/);

        const erin = await signIn('erin');
        await erin.goto(oneUse);
        const response = erin.waitForResponse((r) => r.url().endsWith('/invitations/join'));
        await erin.getByRole('button', { name: 'Accept the invitation' }).click();
        assertEqual((await response).status(), 404, 'the used-up link');
        const body = normalize(await erin.locator('body').textContent());
        assert(body.includes('this invitation cannot be accepted'), `the refusal: ${body}`);
        assert(!body.includes('Acme'), `the refusal names the organization: ${body}`);
        await look(erin, 'invite-used-up');
    });
});
