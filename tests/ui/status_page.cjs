// The status page in headless Chromium (Debian's /usr/bin/chromium driven by npm's
// playwright-core), against a running Switchyard that tests/ops_ui.rs started. It checks:
// - without a token the page shows only the token form and reads no data; a wrong token
//   gets a clear message; a viewer token shows the data and is kept in sessionStorage only
//   (not in a URL, not in a cookie), and a reload does not ask again;
// - a drain, a flip and a Postgres switchover made through the API appear on the page within
//   2 s each (the time is printed);
// - the config history shows each version's diff (a click picks the version);
// - every request the page made went to its own origin, none with the token in its URL.
// Screenshots go to $SHOTS. Prints one JSON line `RESULT {...}` with the timings.

const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('SY_URL');
const VIEWER = env('VIEWER_TOKEN');
const OPERATOR = env('OPERATOR_TOKEN');
const DRAIN = env('DRAIN_BACKEND');
const SWITCHOVER_TO = env('SWITCHOVER_TO');
const SHOTS = env('SHOTS');
const WITHIN_MS = 2000;

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function operate(path, body) {
  const resp = await fetch(BASE + path, {
    method: 'POST',
    headers: { Authorization: `Bearer ${OPERATOR}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await resp.text();
  check(resp.status === 200, `POST ${path}: ${resp.status} ${text}`);
  return JSON.parse(text);
}

/** Wait (up to 2 s) for `selector` on the page; the time it took, in ms. */
async function appears(page, selector, what) {
  const started = Date.now();
  try {
    await page.waitForSelector(selector, { state: 'attached', timeout: WITHIN_MS });
  } catch (e) {
    await page.screenshot({ path: `${SHOTS}/failed.png`, fullPage: true });
    throw new Error(`${what} did not appear within ${WITHIN_MS} ms (${selector})`);
  }
  return Date.now() - started;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const result = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const requests = [];
    const problems = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

    // 1. No token: the form, and no data.
    await page.goto(`${BASE}/ui`);
    await page.waitForSelector('#login:not([hidden])');
    check(await page.isHidden('#dashboard'), 'the dashboard shows without a token');
    check((await page.$$('[data-upstream], [data-cluster]')).length === 0, 'data shows without a token');
    const anonymous = await page.evaluate(async () => (await fetch('/v1/status')).status);
    check(anonymous === 401, `GET /v1/status without a token answered ${anonymous}`);
    await page.screenshot({ path: `${SHOTS}/login.png` });

    // 2. A wrong token: a clear message, nothing kept.
    await page.fill('#token', 'not-a-real-token');
    await page.click('#login-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('refused'));
    const message = await page.textContent('#login-error');
    check(message.includes('invalid token'), `wrong-token message: ${message}`);
    check(await page.evaluate(() => sessionStorage.length) === 0, 'a refused token was kept');

    // 3. The viewer token: data, token in sessionStorage only; a reload keeps it.
    await page.fill('#token', VIEWER);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('[data-upstream="api"] [data-backend]');
    await page.waitForSelector('[data-cluster="main"] [data-node]');
    await page.waitForSelector('[data-config-version]');
    const stored = await page.evaluate(() => Object.values(sessionStorage));
    check(stored.includes(VIEWER), 'the token is not in sessionStorage');
    check((await context.cookies()).length === 0, 'the page set a cookie');
    await page.reload();
    await page.waitForSelector('[data-upstream="api"] [data-backend]');
    check(await page.isHidden('#login'), 'a reload asked for the token again');
    await page.screenshot({ path: `${SHOTS}/overview.png`, fullPage: true });

    // 4. A drain through the API.
    await operate(`/v1/upstreams/api/backends/${encodeURIComponent(DRAIN)}/drain`, {});
    result.drain_ms = await appears(page, `[data-backend="${DRAIN}"] [data-state="draining"]`, 'the drain');

    // 5. A flip through the API: target pool, state and the new weights.
    await operate('/v1/upstreams/api/flip', { to: 'green', verify: { window: '2m', min_requests: 50 } });
    result.flip_ms = await appears(page,
      '[data-upstream="api"] [data-flip-to="green"][data-flip-state="verifying"]', 'the flip');
    await appears(page, '[data-upstream="api"] .legend[data-pool="green"][data-weight="100"]', 'the flipped weights');
    // Traffic that the verification counts (tests/ops_ui.rs sends it) shows up too.
    await page.waitForFunction(() => {
      const row = [...document.querySelectorAll('[data-flip-state="verifying"] .flip-rows td')];
      return row.some((td) => /^[1-9]\d* (of 50|\(judged)/.test(td.textContent));
    }, null, { timeout: 10000 });
    await page.screenshot({ path: `${SHOTS}/flip.png`, fullPage: true });

    // 6. A Postgres switchover through the API: the new primary and the history entry.
    await operate('/v1/clusters/main/switchover', { to: SWITCHOVER_TO });
    result.switchover_ms = await appears(page,
      `[data-cluster="main"] [data-node="${SWITCHOVER_TO}"][data-role="primary"]`, 'the new primary');
    await appears(page, `[data-cluster="main"] [data-failover-new="${SWITCHOVER_TO}"][data-outcome="ok"]`,
      'the switchover in the failover history');
    await page.waitForSelector('[data-cluster="main"] [data-fenced]');
    await page.screenshot({ path: `${SHOTS}/switchover.png`, fullPage: true });

    // 7. The history: the newest version's diff is shown; a click shows another one's.
    await page.waitForSelector('pre.diff[data-diff-to]');
    await page.click('[data-version="2"]');
    await appears(page, 'pre.diff[data-diff-to="2"]', 'the diff of version 2');
    const diff = await page.textContent('pre.diff[data-diff-to="2"]');
    check(diff.includes('state = "drain"'), `version 2's diff does not show the drain: ${diff}`);

    // 8. What the page asked for.
    const foreign = requests.filter((u) => !u.startsWith(BASE));
    check(foreign.length === 0, `requests to other origins: ${foreign.join(', ')}`);
    check(!requests.some((u) => u.includes(VIEWER)), 'a request carried the token in its URL');
    check(problems.length === 0, problems.join('; '));
    result.requests = requests.length;
  } finally {
    await browser.close();
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
})().catch((e) => {
  console.error(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
