// The status page's main module: asks for a viewer token once (kept in sessionStorage, sent
// only in the Authorization header), polls the control API every second and redraws the
// three panels. A refused token clears the stored one and asks again with the API's reason;
// an unreachable API keeps the last data on screen, marked stale, and says since when.

import { h } from './dom.js';
import { renderUpstreams } from './http.js';
import { renderClusters } from './postgres.js';
import { renderConfig } from './config.js';

const TOKEN_KEY = 'switchyard.token';
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

const view = {
  status: null,
  flips: {},
  history: [],
  historyVersion: null,
  diffs: new Map(),
  selected: null,
  followLatest: true,
  fetchedAt: 0,
  clockOffset: 0,
  failingSince: null,
  failure: '',
};
let timer = null;

/** A refusal of the token (401/403), with the API's message. */
class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { allow404 = false } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Refused(401, 'no token');
  const resp = await fetch(path, {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    throw new Refused(resp.status, body.error ?? resp.statusText);
  }
  if (allow404 && resp.status === 404) return null;
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new Error(`${path}: ${resp.status} ${body.error ?? resp.statusText}`);
  }
  return { body: await resp.json(), date: resp.headers.get('Date') };
}

function showLogin(message) {
  clearTimeout(timer);
  timer = null;
  $('dashboard').hidden = true;
  $('signout').hidden = true;
  $('summary').textContent = '';
  $('freshness').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('login-error').textContent = '';
  $('dashboard').hidden = false;
  $('signout').hidden = false;
}

/** The server's clock now, in ms (the browser's corrected by the last `Date` header). */
function serverNow() {
  return Date.now() + view.clockOffset;
}

async function loadDiff(version) {
  if (view.diffs.has(version)) return;
  view.diffs.set(version, null);
  try {
    const r = await api(`/v1/config/diff?to=${version}`, { allow404: true });
    view.diffs.set(version, r ? r.body : { error: 'No earlier version is kept in the history.' });
  } catch (e) {
    if (e instanceof Refused) throw e;
    view.diffs.delete(version);
  }
}

function select(version) {
  view.selected = version;
  view.followLatest = version === view.status?.version;
  loadDiff(version).then(render, refused);
  render();
}

function render() {
  const st = view.status;
  if (!st) return;
  const now = serverNow();
  const upstreams = Object.keys(st.planes?.http?.upstreams ?? {}).length;
  const clusters = (st.planes?.postgres?.clusters ?? []).length;
  $('summary').textContent = `config v${st.version} · ${upstreams} upstream${upstreams === 1 ? '' : 's'} · ${clusters} Postgres cluster${clusters === 1 ? '' : 's'}`;
  renderUpstreams($('upstreams'), st.planes?.http, view.flips, now);
  renderClusters($('clusters'), st.planes?.postgres, now);
  renderConfig($('config'), { ...view, now }, select);
  renderFreshness();
}

function renderFreshness() {
  const age = (Date.now() - view.fetchedAt) / 1000;
  $('freshness').textContent = view.fetchedAt ? `updated ${age.toFixed(1)} s ago · every ${POLL_MS / 1000} s` : '';
  const banner = $('banner');
  if (view.failingSince) {
    banner.hidden = false;
    banner.replaceChildren(h('b', {}, 'The control API does not answer'),
      ` since ${new Date(view.failingSince).toLocaleTimeString([], { hour12: false })} (${view.failure}); the data below is ${age.toFixed(0)} s old.`);
    $('dashboard').classList.add('stale');
  } else {
    banner.hidden = true;
    $('dashboard').classList.remove('stale');
  }
}

function refused(e) {
  if (!(e instanceof Refused)) return;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(e.status === 403
    ? `This token may not read the status (${e.message}).`
    : `The token was refused (${e.message}). Enter a viewer token.`);
}

async function poll() {
  try {
    const status = await api('/v1/status');
    const names = Object.keys(status.body.planes?.http?.upstreams ?? {});
    const flips = await Promise.all(names.map((n) => api(`/v1/upstreams/${encodeURIComponent(n)}/flip`, { allow404: true })));
    if (status.body.version !== view.historyVersion) {
      view.history = (await api('/v1/config/history')).body.history;
      view.historyVersion = status.body.version;
    }
    const serverDate = Date.parse(status.date ?? '');
    // The Date header has whole seconds: correct only a real skew, not its rounding.
    const skew = Number.isNaN(serverDate) ? 0 : serverDate + 500 - Date.now();
    view.clockOffset = Math.abs(skew) > 2000 ? skew : 0;
    view.status = status.body;
    view.flips = Object.fromEntries(names.map((n, i) => [n, flips[i]?.body]).filter(([, f]) => f));
    view.fetchedAt = Date.now();
    view.failingSince = null;
    if (view.followLatest || view.selected === null) view.selected = status.body.version;
    await loadDiff(view.selected);
    render();
  } catch (e) {
    if (e instanceof Refused) {
      refused(e);
      return;
    }
    view.failingSince = view.failingSince ?? Date.now();
    view.failure = e.message;
    renderFreshness();
  }
  timer = setTimeout(poll, POLL_MS);
}

function start() {
  showDashboard();
  clearTimeout(timer);
  poll();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    $('token').value = '';
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    view.status = null;
    showLogin('');
  });
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else showLogin('');
});
