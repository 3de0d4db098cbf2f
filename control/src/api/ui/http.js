// The HTTP part of the status page: every upstream with its pools (an SVG bar of the pool
// weights), each backend's state, in-flight requests and recent failures, and the latest
// blue/green flip of the upstream (target pool, requests and errors against the threshold,
// time left, outcome).

import { h, badge, stackedBar, meter, parseDuration, fmtDuration, fmtTime, ago } from './dom.js';

const STATE_KIND = { healthy: 'ok', draining: 'warn', ejected: 'bad', down: 'bad' };
const FLIP_KIND = { verifying: 'info', verified: 'ok', unverified: 'warn', rolled_back: 'bad', failed: 'bad' };
const NAMED_COLOURS = ['blue', 'green', 'red', 'orange', 'purple', 'teal'];

/** The colour class of a pool: its own name when it is a colour, else by position. */
function poolClass(name, index) {
  const n = name.toLowerCase();
  return NAMED_COLOURS.includes(n) ? `pool-${n}` : `pool-${index % 6}`;
}

function weightBar(pools) {
  const names = Object.keys(pools);
  const total = names.reduce((sum, n) => sum + pools[n].weight, 0);
  const parts = names.map((name, i) => ({
    value: pools[name].weight,
    cls: poolClass(name, i),
    title: `${name}: weight ${pools[name].weight}`,
    attrs: { 'data-pool': name },
  }));
  const legend = names.map((name, i) =>
    h('span', { class: 'legend', 'data-pool': name, 'data-weight': pools[name].weight },
      h('span', { class: `swatch ${poolClass(name, i)}` }),
      `${name} ${pools[name].weight}`,
      total > 0 ? h('span', { class: 'dim' }, ` (${Math.round((100 * pools[name].weight) / total)}%)`) : null));
  return h('div', { class: 'weights' }, stackedBar(parts), h('div', { class: 'legends' }, legend));
}

function backendState(b, now) {
  const kind = STATE_KIND[b.state] ?? 'muted';
  const detail = b.state === 'ejected' && b.ejected_until
    ? h('span', { class: 'dim' }, ` until ${fmtTime(b.ejected_until)} (${fmtDuration((new Date(b.ejected_until).getTime() - now) / 1000)})`)
    : null;
  return [badge(b.state, kind, { 'data-state': b.state }), detail];
}

function poolTable(pools, maxInFlight, now) {
  const rows = [];
  Object.entries(pools).forEach(([name, pool], i) => {
    rows.push(h('tr', { class: 'pool-row' },
      h('th', { colspan: 5 }, h('span', { class: `swatch ${poolClass(name, i)}` }), `pool ${name}`,
        h('span', { class: 'dim' }, ` · weight ${pool.weight} · ${pool.backends.length} backend${pool.backends.length === 1 ? '' : 's'}`))));
    for (const b of pool.backends) {
      rows.push(h('tr', { 'data-backend': b.addr, 'data-pool': name },
        h('td', {}, h('code', {}, b.addr)),
        h('td', {}, backendState(b, now)),
        h('td', { class: 'num' }, b.weight),
        h('td', { class: 'num inflight' }, meter(b.in_flight, maxInFlight, { title: `${b.in_flight} in flight` }), ` ${b.in_flight}`),
        h('td', { class: b.recent_failures > 0 ? 'num bad-text' : 'num' }, b.recent_failures)));
    }
  });
  return h('table', { class: 'backends' },
    h('thead', {}, h('tr', {}, h('th', {}, 'backend'), h('th', {}, 'state'), h('th', { class: 'num' }, 'weight'),
      h('th', { class: 'num' }, 'in flight'), h('th', { class: 'num' }, 'recent failures'))),
    h('tbody', {}, rows));
}

/** The latest flip of an upstream; `now` is the server's clock in ms. */
function flipPanel(f, now) {
  const verifying = f.state === 'verifying';
  const windowS = parseDuration(f.window);
  const elapsed = ((f.finished_at ? new Date(f.finished_at).getTime() : now) - new Date(f.started_at).getTime()) / 1000;
  const left = Math.max(0, windowS - elapsed);
  const ratio = f.requests > 0 ? f.errors / f.requests : 0;
  const scale = Math.max(f.max_error_ratio * 2, ratio, 0.0001);
  const pct = (x) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
  const rows = [
    ['requests', meter(f.requests, Math.max(f.min_requests, 1), { cls: f.requests >= f.min_requests ? 'fill-ok' : 'fill-info' }),
      f.requests >= f.min_requests ? `${f.requests} (judged from ${f.min_requests})` : `${f.requests} of ${f.min_requests} needed to judge`],
    ['errors', meter(ratio, scale, { threshold: f.max_error_ratio, cls: ratio > f.max_error_ratio ? 'fill-bad' : 'fill-ok' }),
      `${f.errors} (${pct(ratio)}); rolls back above ${pct(f.max_error_ratio)}`],
    ['time left', meter(left, windowS, { cls: 'fill-info' }),
      verifying ? `${fmtDuration(left)} of ${fmtDuration(windowS)}` : `window ${fmtDuration(windowS)}, ended ${fmtTime(f.finished_at)}`],
  ];
  const weights = Object.entries(f.weights).map(([p, w]) => `${p} ${w}`).join(', ');
  const previous = Object.entries(f.previous_weights).map(([p, w]) => `${p} ${w}`).join(', ');
  return h('div', { class: `flip ${verifying ? 'active' : ''}`, 'data-flip-state': f.state, 'data-flip-to': f.to },
    h('div', { class: 'flip-head' },
      verifying ? 'Flip in progress to ' : 'Last flip to ', h('b', {}, f.to), ' ',
      badge(f.state.replace('_', ' '), FLIP_KIND[f.state] ?? 'muted'),
      h('span', { class: 'dim' }, ` by ${f.actor}, ${ago(f.started_at, now)} · v${f.flip_version}`,
        f.rollback_version ? ` → rollback v${f.rollback_version}` : '')),
    h('table', { class: 'flip-rows' }, h('tbody', {}, rows.map(([k, bar, text]) =>
      h('tr', {}, h('th', {}, k), h('td', { class: 'meter-cell' }, bar), h('td', {}, text))))),
    h('div', { class: 'dim' }, `weights ${weights} (before: ${previous})`),
    f.reason ? h('div', { class: 'flip-reason' }, 'outcome: ', f.reason) : null);
}

/** Render every upstream of `http` (the HTTP plane's status) with its latest flip. */
export function renderUpstreams(root, http, flips, now) {
  const upstreams = http?.upstreams ?? {};
  const names = Object.keys(upstreams).sort();
  if (names.length === 0) {
    root.replaceChildren(h('p', { class: 'dim' }, 'No HTTP upstreams are configured.'));
    return;
  }
  root.replaceChildren(...names.map((name) => {
    const u = upstreams[name];
    const backends = Object.values(u.pools).flatMap((p) => p.backends);
    const maxInFlight = Math.max(4, ...backends.map((b) => b.in_flight));
    const counts = {};
    for (const b of backends) counts[b.state] = (counts[b.state] ?? 0) + 1;
    return h('article', { class: 'card', 'data-upstream': name },
      h('header', {}, h('h3', {}, name), badge(u.balance, 'muted'),
        h('span', { class: 'dim' }, Object.entries(counts).map(([st, n]) => `${n} ${st}`).join(' · '))),
      weightBar(u.pools),
      flips[name] ? flipPanel(flips[name], now) : null,
      poolTable(u.pools, maxInFlight, now));
  }));
}
