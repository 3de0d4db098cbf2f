// The config part of the status page: the running version, who applied it and from where,
// the last reload error, what needs a restart, and the history with each version's diff
// against the one before it (fetched once per version from GET /v1/config/diff, then kept:
// a version never changes).

import { h, badge, facts, fmtTime, fmtDuration, ago } from './dom.js';

function diffView(entry) {
  if (!entry) return h('p', { class: 'dim' }, 'loading the diff…');
  if (entry.error) return h('p', { class: 'dim' }, entry.error);
  const lines = entry.diff.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  const cls = (l) => (l.startsWith('+++') || l.startsWith('---') ? 'file'
    : l.startsWith('@@') ? 'hunk' : l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '');
  return h('div', { class: 'diff-box' },
    h('div', { class: 'dim' }, `v${entry.from} → v${entry.to}: +${entry.added} −${entry.removed} lines (secrets redacted)`),
    lines.length === 0 ? h('p', { class: 'dim' }, 'No textual change.')
      : h('pre', { class: 'diff', 'data-diff-to': entry.to }, lines.map((l) => h('span', { class: cls(l) }, l, '\n'))));
}

/**
 * Render the config panel. `view` is `{status, history, diffs, selected, now}`; `select(v)`
 * is called when a history row is clicked.
 */
export function renderConfig(root, view, select) {
  const { status: st, history, diffs, selected, now } = view;
  const restart = [...(st.restart_required ?? []), ...(st.planes?.http?.restart_required ?? []),
    ...(st.planes?.postgres?.restart_required ?? [])];
  root.replaceChildren(h('article', { class: 'card', 'data-config-version': st.version },
    facts([
      ['version', h('b', { class: 'version' }, `v${st.version}`)],
      ['applied', [fmtTime(st.applied_at), h('span', { class: 'dim' }, ` (${ago(st.applied_at, now)})`)]],
      ['by', h('span', { 'data-applied-by': st.applied_by }, st.applied_by)],
      ['from', st.applied_from ?? h('span', { class: 'dim' }, 'this host')],
      ['source', badge(st.source, 'muted')],
      ['hash', h('code', { title: st.hash }, String(st.hash).slice(0, 12))],
      ['file', h('code', {}, st.config_path)],
      ['uptime', fmtDuration(st.uptime_seconds)],
    ]),
    st.last_reload_error
      ? h('div', { class: 'reload-error', 'data-reload-error': '' }, h('b', {}, 'Last reload failed; the previous config keeps running:'),
        h('pre', {}, typeof st.last_reload_error === 'string' ? st.last_reload_error : JSON.stringify(st.last_reload_error, null, 2)))
      : h('div', { class: 'dim' }, 'Last reload: no error.'),
    restart.length ? h('div', { class: 'notice' }, h('b', {}, 'Needs a restart: '), restart.join('; ')) : null,
    h('h4', {}, 'History'),
    h('table', { class: 'history' },
      h('thead', {}, h('tr', {}, ['version', 'applied', 'by', 'from', 'source'].map((t) => h('th', {}, t)))),
      h('tbody', {}, history.map((e) => h('tr', {
        class: e.version === selected ? 'selected' : '', 'data-version': e.version, tabindex: 0,
        onclick: () => select(e.version),
      }, h('td', {}, `v${e.version}`), h('td', {}, fmtTime(e.applied_at)), h('td', {}, e.actor),
      h('td', {}, e.remote ?? '—'), h('td', {}, e.source))))),
    h('h4', {}, `Diff of v${selected}`),
    diffView(diffs.get(selected))));
}
