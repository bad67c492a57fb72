// The helpers every browser scenario imports: a real Chromium driven by
// Playwright (playwright-core, with Debian's /usr/bin/chromium), full-page
// screenshots a person can look at, axe-core accessibility checks, and
// assertions whose failures read well in a cargo test log.
//
// A scenario is a plain Node ES module run by testkit/src/browser.rs:
//
//     import { scenario, step, newPage, expectText } from './lib.mjs';
//     await scenario('home', async () => {
//         const page = await newPage();
//         await step('open the home page', async () => {
//             await page.goto('/');
//             await expectText(page.locator('h1'), 'Organizations');
//         });
//     });
//
// It exits non-zero when anything fails. By hand, against a running server:
//
//     TENANCY_BASE_URL=http://127.0.0.1:3000 node testkit/browser/smoke.mjs
//
// Environment (the Rust side sets all of them):
//   TENANCY_BASE_URL         the server under test (required)
//   TENANCY_SCREENSHOT_DIR   where screenshots go (default <repo>/target/screenshots)
//   TENANCY_BROWSER_MODULES  the node_modules that scripts/install-browser filled
//                            (default ${TENANCY_CACHE_DIR:-~/.cache/tenancy}/browser/node_modules)
//   TENANCY_CHROMIUM         the browser executable (default /usr/bin/chromium)

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The base URL of the server under test. */
export const BASE_URL = process.env.TENANCY_BASE_URL ?? '';

const SCREENSHOT_DIR =
    process.env.TENANCY_SCREENSHOT_DIR ?? resolve(here, '../../target/screenshots');
const MODULES =
    process.env.TENANCY_BROWSER_MODULES ??
    join(process.env.TENANCY_CACHE_DIR ?? join(homedir(), '.cache/tenancy'), 'browser/node_modules');
const CHROMIUM = process.env.TENANCY_CHROMIUM ?? '/usr/bin/chromium';

// Headless, and nothing that phones home: on a closed network Chromium's
// background connections are refused and slow everything down. Playwright
// adds a fresh --user-data-dir itself (passing one is refused; it lives in
// TMPDIR, which the Rust side points at a directory it deletes).
const CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
];

/** How long one action or assertion may wait, in milliseconds. */
export const ACTION_TIMEOUT_MS = 10_000;

// Modules resolve from the cache, not from this file's directory: the
// packages live outside the repo, and ES imports ignore NODE_PATH.
const requireFromCache = createRequire(join(MODULES, '..', 'resolve-from-here.cjs'));

function load(name) {
    try {
        return requireFromCache(name);
    } catch (e) {
        throw new Error(
            `cannot load ${name} from ${MODULES} (run scripts/install-browser): ${e.message}`,
        );
    }
}

let browserPromise = null;
const pages = new Set();
const noScriptPages = new WeakSet();
const timings = { launchMs: null };

/** The browser of this scenario, launched on first use (once per process). */
export function launch() {
    if (!browserPromise) {
        const { chromium } = load('playwright-core');
        const started = performance.now();
        browserPromise = chromium
            .launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true })
            .then((browser) => {
                timings.launchMs = Math.round(performance.now() - started);
                log(`browser: Chromium ${browser.version()} started in ${timings.launchMs} ms`);
                return browser;
            });
    }
    return browserPromise;
}

/**
 * A page in a fresh browser context (its own cookies and storage), whose
 * relative URLs resolve against `baseUrl` (default `TENANCY_BASE_URL`).
 * `options` go to `browser.newContext`, for example
 * `newPage({ javaScriptEnabled: false })`. Console errors and uncaught
 * page errors are printed.
 */
export async function newPage(baseUrl = BASE_URL, options = {}) {
    if (typeof baseUrl === 'object' && baseUrl !== null) {
        options = baseUrl;
        baseUrl = BASE_URL;
    }
    if (!baseUrl) {
        throw new Error('no base URL: set TENANCY_BASE_URL');
    }
    const browser = await launch();
    const context = await browser.newContext({ baseURL: baseUrl, ...options });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    const page = await context.newPage();
    page.on('pageerror', (e) => log(`page error on ${page.url()}: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error') {
            const source = m.location()?.url;
            log(`console error on ${page.url()}: ${m.text()}${source ? ` (${source})` : ''}`);
        }
    });
    pages.add(page);
    if (options.javaScriptEnabled === false) noScriptPages.add(page);
    page.on('close', () => pages.delete(page));
    return page;
}

/**
 * Saves a full-page PNG as `<TENANCY_SCREENSHOT_DIR>/<name>.png` and
 * returns its path. Names are file names (letters, digits, `.`, `_`, `-`),
 * and the directory is shared by every scenario: prefix names with the
 * scenario's (`smoke-home`).
 */
export async function screenshot(page, name) {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) {
        throw new Error(`screenshot name ${JSON.stringify(name)} is not a plain file name`);
    }
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    const path = join(SCREENSHOT_DIR, `${name}.png`);
    // Written whole or not at all: a reader never sees half a file.
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, await page.screenshot({ fullPage: true }));
    await rename(partial, path);
    log(`screenshot: ${path}`);
    return path;
}

let axeSource = null;

/** The impacts that fail an accessibility check. */
export const FAILING_IMPACTS = ['serious', 'critical'];

/** How long one axe-core run may take, in milliseconds. */
export const AUDIT_TIMEOUT_MS = 30_000;

/**
 * Runs axe-core (its default rules) on the page as it is now. Throws an
 * `AssertionError` listing every violation of impact `serious` or
 * `critical`; prints the milder ones as notes. Returns axe's results.
 *
 * axe is evaluated through the DevTools protocol, so a strict CSP does not
 * stop it. It needs timers, which do not run in a page whose context has
 * JavaScript disabled: such a page is audited as a copy, its current DOM
 * served at the same URL in a JavaScript-enabled context with the page's
 * own scripts blocked (`script-src 'none'`) and its `<noscript>` content
 * kept visible, so what is audited is what a reader without JavaScript sees.
 */
export async function checkAccessibility(page, name) {
    if (axeSource === null) {
        axeSource = await readFile(requireFromCache.resolve('axe-core/axe.min.js'), 'utf8');
    }
    const audited = noScriptPages.has(page) ? await scriptableCopy(page) : null;
    let results;
    try {
        const target = audited ?? page;
        if (!(await target.evaluate(() => typeof window.axe === 'object'))) {
            await target.evaluate(axeSource);
        }
        results = await withTimeout(
            target.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] })),
            AUDIT_TIMEOUT_MS,
            `axe-core on ${page.url()}`,
        );
    } finally {
        await audited?.context().close();
    }
    const copy = audited ? ' (audited as a copy: the page has JavaScript disabled)' : '';
    const failing = results.violations.filter((v) => FAILING_IMPACTS.includes(v.impact));
    const mild = results.violations.filter((v) => !FAILING_IMPACTS.includes(v.impact));
    for (const v of mild) {
        log(`accessibility note (${name}): [${v.impact}] ${v.id}: ${v.help} (${v.nodes.length}x, not failing)`);
    }
    if (failing.length > 0) {
        throw new AssertionError(
            `accessibility (${name}): ${failing.length} serious or critical violation(s) on ${page.url()}${copy}\n` +
                failing.map(describeViolation).join('\n'),
        );
    }
    log(`accessibility (${name}): no serious or critical violations${copy}`);
    return results;
}

/** The page's current DOM at its URL, in a context that runs timers. */
async function scriptableCopy(page) {
    const url = page.url();
    const html = (await page.content()).replace(/<(\/?)noscript\b/gi, '<$1div data-noscript');
    const browser = await launch();
    const context = await browser.newContext({ viewport: page.viewportSize() });
    await context.addCookies(await page.context().cookies());
    const copy = await context.newPage();
    let served = false;
    await copy.route('**/*', (route) => {
        const request = route.request();
        if (!served && request.isNavigationRequest() && request.frame() === copy.mainFrame()) {
            served = true;
            return route.fulfill({
                status: 200,
                headers: {
                    'content-type': 'text/html; charset=utf-8',
                    'content-security-policy': "script-src 'none'",
                },
                body: html,
            });
        }
        return route.continue();
    });
    await copy.goto(url, { timeout: ACTION_TIMEOUT_MS });
    return copy;
}

async function withTimeout(promise, ms, what) {
    let timer;
    const expired = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
    });
    try {
        return await Promise.race([promise, expired]);
    } finally {
        clearTimeout(timer);
    }
}

function describeViolation(v) {
    const nodes = v.nodes.map((n) => {
        const fix = n.failureSummary ? `\n        ${n.failureSummary.replace(/\n/g, '\n        ')}` : '';
        return `      at ${n.target.join(' ')}: ${truncate(n.html, 160)}${fix}`;
    });
    return `  [${v.impact}] ${v.id}: ${v.help}\n      ${v.helpUrl}\n${nodes.join('\n')}`;
}

// ---------------------------------------------------------------- asserts

/** A failed expectation: printed without a stack trace. */
export class AssertionError extends Error {
    constructor(message) {
        super(message);
        this.name = 'AssertionError';
    }
}

/** Fails with `message` unless `condition` holds. */
export function assert(condition, message) {
    if (!condition) throw new AssertionError(message);
}

/** Fails unless `actual === expected`. */
export function assertEqual(actual, expected, what) {
    if (actual !== expected) {
        throw new AssertionError(`${what}:\n  expected: ${show(expected)}\n  actual:   ${show(actual)}`);
    }
}

/** Fails unless the string `text` contains `needle`. */
export function assertIncludes(text, needle, what) {
    if (typeof text !== 'string' || !text.includes(needle)) {
        throw new AssertionError(`${what}:\n  expected to contain: ${show(needle)}\n  actual: ${show(text)}`);
    }
}

/**
 * Waits (up to ACTION_TIMEOUT_MS) until the locator's first element's text,
 * whitespace collapsed, contains `expected`; fails with what it showed.
 */
export async function expectText(locator, expected) {
    const deadline = Date.now() + ACTION_TIMEOUT_MS;
    let actual = null;
    for (;;) {
        try {
            actual = normalize(await locator.first().textContent({ timeout: 1_000 }));
        } catch {
            actual = null;
        }
        if (actual !== null && actual.includes(expected)) return actual;
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
    }
    const where = locator.page ? ` on ${locator.page().url()}` : '';
    throw new AssertionError(
        `text of ${locator}${where}:\n  expected to contain: ${show(expected)}\n  actual: ${
            actual === null ? '(no such element)' : show(actual)
        }`,
    );
}

/** Fails unless the page's path and query equal `expected` (e.g. `/new`). */
export function expectPath(page, expected) {
    const url = new URL(page.url());
    assertEqual(url.pathname + url.search, expected, `path of ${page.url()}`);
}

/**
 * For checks that must fail: runs `fn`, fails unless it throws an error
 * whose message matches every pattern, and returns that error.
 */
export async function expectFailure(what, fn, ...patterns) {
    let error = null;
    try {
        await fn();
    } catch (e) {
        error = e;
    }
    if (error === null) {
        throw new AssertionError(`${what}: expected a failure, but it passed`);
    }
    const message = String(error?.message ?? error);
    for (const p of patterns) {
        if (!(p instanceof RegExp ? p.test(message) : message.includes(p))) {
            throw new AssertionError(`${what}: failed, but the message does not match ${p}:\n${indent(message)}`);
        }
    }
    log(`expected failure (${what}):\n${indent(message)}`);
    return error;
}

// --------------------------------------------------------------- running

let currentStep = null;

/** Runs one named step, printing it and how long it took. */
export async function step(name, fn) {
    currentStep = name;
    log(`step: ${name}`);
    const started = performance.now();
    const result = await fn();
    log(`  ok (${Math.round(performance.now() - started)} ms)`);
    currentStep = null;
    return result;
}

/**
 * Runs a whole scenario: on failure prints which step failed and why,
 * saves a `<name>-failure` screenshot of each open page, and sets a
 * non-zero exit code. Always closes the browser. Stops by itself if the
 * process that started it goes away.
 */
export async function scenario(name, fn) {
    const started = performance.now();
    const parent = process.ppid;
    const orphanWatch = setInterval(() => {
        if (process.ppid !== parent) {
            log(`scenario ${name}: the test process went away; stopping`);
            closeBrowser().finally(() => process.exit(2));
        }
    }, 500);
    orphanWatch.unref();
    let failed = false;
    try {
        await fn();
    } catch (e) {
        failed = true;
        const where = currentStep ? ` in step "${currentStep}"` : '';
        const detail = e instanceof AssertionError ? e.message : (e?.stack ?? String(e));
        console.error(`FAILED: scenario ${name}${where}:\n${indent(detail)}`);
        let i = 0;
        for (const page of pages) {
            try {
                await screenshot(page, `${name}-failure${i++ ? `-${i}` : ''}`);
            } catch (shotError) {
                console.error(`(no failure screenshot: ${shotError.message.split('\n')[0]})`);
            }
        }
    } finally {
        clearInterval(orphanWatch);
        await closeBrowser();
    }
    const total = Math.round(performance.now() - started);
    log(`scenario ${name}: ${failed ? 'FAILED' : 'passed'} in ${total} ms (browser start ${timings.launchMs ?? '-'} ms)`);
    if (failed) process.exitCode = 1;
}

async function closeBrowser() {
    if (!browserPromise) return;
    const pending = browserPromise;
    browserPromise = null;
    try {
        await (await pending).close();
    } catch {
        // It never started, or is already gone: nothing to close.
    }
}

// --------------------------------------------------------------- helpers

function log(line) {
    console.log(line);
}

function normalize(text) {
    return text === null ? null : text.replace(/\s+/g, ' ').trim();
}

function show(value) {
    return typeof value === 'string' ? JSON.stringify(truncate(value, 400)) : String(value);
}

function truncate(text, max) {
    return text.length > max ? `${text.slice(0, max)}…` : text;
}

function indent(text) {
    return text.replace(/^/gm, '    ');
}
