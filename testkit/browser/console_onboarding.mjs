// Onboarding: nina, signed in but a member of nothing, finds the form to
// create an organization on the start page (the demo's console allows
// it). She first picks a slug that is taken: the form comes back with why,
// and with what she typed. She clears the slug, so that it is made from
// the name, and lands on her new organization's usage page as its owner.
// testkit/tests/console/browser.rs checks the organization on the server.

import { assertEqual, expectPath, expectText, scenario, step } from './lib.mjs';
import { look, normalize, panelTable, rows, selector, signIn } from './console_common.mjs';

await scenario('console-onboarding', async () => {
    const page = await signIn('nina');
    const form = page.getByRole('region', { name: 'Create an organization' });

    await step('no organization yet, and a form to create one', async () => {
        await expectText(page.getByRole('region', { name: 'Organizations', exact: true }), 'You belong to no organization yet.');
        assertEqual(await selector(page).getByRole('link').count(), 0, 'links in the org selector');
        assertEqual(await form.getByLabel('Time zone').inputValue(), 'UTC', 'the default time zone');
        await look(page, 'onboarding-start');
    });

    await step('a slug that is taken comes back with why', async () => {
        await form.getByLabel('Name').fill('Nina Studio');
        await form.getByLabel('Slug, for addresses').fill('acme');
        await form.getByLabel('Time zone').fill('Europe/Paris');
        await form.getByRole('button', { name: 'Create organization' }).click();
        await page.waitForURL(/\/console\/orgs$/);
        expectPath(page, '/console/orgs');
        await expectText(form.getByRole('alert'), 'is taken');
        assertEqual(await form.getByLabel('Name').inputValue(), 'Nina Studio', 'the name she typed');
        assertEqual(await form.getByLabel('Time zone').inputValue(), 'Europe/Paris', 'the zone she typed');
        await look(page, 'onboarding-slug-taken');
    });

    await step('with the slug made from the name, she owns it', async () => {
        await form.getByLabel('Slug, for addresses').fill('');
        await form.getByRole('button', { name: 'Create organization' }).click();
        await page.waitForURL(/\/console\/orgs\/[0-9a-f-]{36}\/usage\?done=org-created$/);
        await expectText(page.getByRole('status'), 'The organization was created, with you as its owner.');
        await expectText(page.locator('main .subtitle'), 'Nina Studio · periods in Europe/Paris');
        const current = await selector(page).locator('a[aria-current="true"]').allTextContents();
        assertEqual(JSON.stringify(current.map(normalize)), JSON.stringify(['Nina Studio owner']), 'the selector');
        console.log(`her organization: ${new URL(page.url()).pathname.split('/')[3]}`);
        await look(page, 'onboarding-created');
    });

    await step('the start page lists it, and offers no more', async () => {
        await page.goto('/console');
        const orgs = await rows(panelTable(page, 'Organizations'));
        assertEqual(JSON.stringify(orgs), JSON.stringify([['Nina Studio', 'nina-studio', 'owner']]), 'the organizations table');
        assertEqual(await form.count(), 0, 'create forms');
    });
});
