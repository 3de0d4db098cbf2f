// The Postgres part of the status page: every cluster with each node's configured and
// observed role, reachability, replay lag, fenced mark and pool, a failover in progress or
// held back, and the failover history (newest first).

import { h, badge, facts, fmtBytes, fmtTime, ago } from './dom.js';

function reachability(n) {
  if (n.down) return badge('down', 'bad', { 'data-reachable': 'down' });
  if (!n.checked) return badge('not checked yet', 'muted', { 'data-reachable': 'unknown' });
  return n.reachable ? badge('up', 'ok', { 'data-reachable': 'up' }) : badge('unreachable', 'bad', { 'data-reachable': 'unreachable' });
}

/** A node whose latest checks fail (its last error is kept after it recovers: not shown then). */
function failing(n) {
  return n.last_error && n.consecutive_failures > 0;
}

function lag(n) {
  if (n.role !== 'replica') return h('span', { class: 'dim' }, '—');
  const seconds = n.lag_seconds === null || n.lag_seconds === undefined ? '—' : `${n.lag_seconds.toFixed(1)} s`;
  const behind = n.lag_bytes > 0 || n.lag_seconds > 1;
  return h('span', { class: behind ? 'warn-text' : '' }, `${fmtBytes(n.lag_bytes)} · ${seconds}`,
    n.wal_receiver ? h('span', { class: 'dim' }, ` · ${n.wal_receiver}`) : null);
}

function nodeRow(n) {
  const mismatch = n.observed_role && n.observed_role !== n.role;
  return h('tr', { 'data-node': n.addr, 'data-role': n.role },
    h('td', {}, h('code', {}, n.addr)),
    h('td', {}, badge(n.role, n.role === 'primary' ? 'primary' : 'info'),
      mismatch ? h('span', { class: 'warn-text' }, ` (acts as ${n.observed_role})`) : null),
    h('td', {}, reachability(n), failing(n) ? h('div', { class: 'warn-text small' }, `${n.consecutive_failures} failed: ${n.last_error.message ?? ''}`) : null),
    h('td', {}, lag(n)),
    h('td', {}, n.fenced ? [badge('fenced', 'bad', { 'data-fenced': '' }), h('div', { class: 'dim small' }, n.fenced)] : h('span', { class: 'dim' }, 'no')),
    h('td', { class: 'num' }, n.pool ? `${n.pool.in_use}/${n.pool.open}` : '—'));
}

function historyTable(history, now) {
  if (!history || history.length === 0) return h('p', { class: 'dim' }, 'No failover or switchover since start.');
  const rows = [...history].reverse().map((a) => h('tr', { 'data-failover-new': a.new_primary ?? '', 'data-outcome': a.outcome },
    h('td', {}, fmtTime(a.started), h('div', { class: 'dim small' }, ago(a.started, now))),
    h('td', {}, a.kind),
    h('td', {}, h('code', {}, a.old_primary ?? '?'), ' → ', h('code', {}, a.new_primary ?? '—')),
    h('td', {}, badge(a.outcome, a.outcome === 'ok' ? 'ok' : 'bad')),
    h('td', { class: 'num' }, a.duration_ms === null || a.duration_ms === undefined ? '—' : `${a.duration_ms} ms`),
    h('td', { class: 'small' }, a.reason ?? '', a.actor ? h('span', { class: 'dim' }, ` (${a.actor})`) : null)));
  return h('table', { class: 'failovers' },
    h('thead', {}, h('tr', {}, ['started', 'kind', 'primary', 'outcome', 'took', 'why'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows));
}

/** Render every cluster of `postgres` (the Postgres plane's status). */
export function renderClusters(root, postgres, now) {
  const clusters = postgres?.clusters ?? [];
  if (clusters.length === 0) {
    root.replaceChildren(h('p', { class: 'dim' }, 'No Postgres clusters are configured.'));
    return;
  }
  root.replaceChildren(...clusters.map((c) => {
    const f = c.failover ?? {};
    const primary = c.nodes.find((n) => n.role === 'primary');
    return h('article', { class: 'card', 'data-cluster': c.name },
      h('header', {}, h('h3', {}, c.name), badge(c.pool_mode, 'muted'),
        c.serving ? badge('serving', 'ok') : badge('not serving', 'bad'),
        h('span', { class: 'dim' }, ` primary `, h('code', { 'data-primary': primary?.addr ?? '' }, primary?.addr ?? 'none'))),
      facts([
        ['listen', h('code', {}, c.bound ?? c.listen)],
        ['clients', `${c.clients} now · ${c.clients_total} since start · ${c.clients_refused_total} refused`],
        ['server connections', String(c.server_connections)],
      ]),
      f.phase ? h('div', { class: 'banner inline' }, `Failover in progress: ${typeof f.phase === 'string' ? f.phase : JSON.stringify(f.phase)}`) : null,
      f.held_back ? h('div', { class: 'notice' }, 'Failover held back: ', typeof f.held_back === 'string' ? f.held_back : (f.held_back.reason ?? JSON.stringify(f.held_back))) : null,
      h('table', { class: 'nodes' },
        h('thead', {}, h('tr', {}, ['node', 'role', 'reachable', 'replay lag', 'fenced', 'pool'].map((t) => h('th', {}, t)))),
        h('tbody', {}, c.nodes.map(nodeRow))),
      h('h4', {}, 'Failover history'),
      historyTable(f.history, now));
  }));
}
