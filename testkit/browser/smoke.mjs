// Proves the browser harness against the test pages of
// testkit/tests/browser_smoke.rs: click a link, submit a form that works
// without JavaScript, read the result, take screenshots, check
// accessibility, and show that the check catches a page that fails it.

import {
    checkAccessibility,
    expectFailure,
    expectPath,
    expectText,
    newPage,
    scenario,
    screenshot,
    step,
} from './lib.mjs';

const NAME = 'Acme & Sons <Ltd>';

await scenario('smoke', async () => {
    // No JavaScript: the pages must work as plain HTML.
    const page = await newPage({ javaScriptEnabled: false });

    await step('open the home page', async () => {
        await page.goto('/');
        await expectText(page.getByRole('heading', { level: 1 }), 'Organizations');
        await expectText(page.getByRole('main'), 'No organizations yet');
        await checkAccessibility(page, 'home');
        await screenshot(page, 'smoke-home');
    });

    await step('follow the link to the form', async () => {
        await page.getByRole('link', { name: 'New organization' }).click();
        await page.waitForURL('**/new');
        expectPath(page, '/new');
        await expectText(page.getByRole('heading', { level: 1 }), 'New organization');
        await checkAccessibility(page, 'new organization form');
    });

    await step('submit the form', async () => {
        await page.getByLabel('Name').fill(NAME);
        await page.getByRole('button', { name: 'Create organization' }).click();
        await page.waitForURL('**/?created=*');
        await expectText(page.getByRole('status'), `Created organization “${NAME}”.`);
        await expectText(page.getByRole('list', { name: 'Organizations' }), NAME);
        await checkAccessibility(page, 'home after create');
        await screenshot(page, 'smoke-created');
    });

    await step('the accessibility check catches an inaccessible page', async () => {
        // Both ways of auditing: a copy for pages without JavaScript, the
        // page itself otherwise.
        const scripted = await newPage();
        for (const [how, p] of [['without JavaScript', page], ['with JavaScript', scripted]]) {
            await p.goto('/broken');
            await expectText(p.getByRole('heading', { level: 1 }), 'Broken on purpose');
            await expectFailure(
                `accessibility of the broken page ${how}`,
                () => checkAccessibility(p, `broken, ${how}`),
                '[critical] image-alt',
                '[critical] button-name',
            );
        }
    });
});
