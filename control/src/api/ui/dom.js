// DOM helpers of the status page: elements are built from data with text nodes (never from
// HTML strings, so a backend or token name cannot inject markup), plus state badges, SVG
// bars and the formatting of times, durations and sizes.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'onclick') {
      el.addEventListener('click', value);
      // Keyboard users choose with Enter or Space (the element gets a tabindex).
      el.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          value(ev);
        }
      });
    }
    else if (key === 'class') el.setAttribute('class', value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: `h('td', {class: 'num'}, 'text', otherElement)`. */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A coloured label; `kind` is ok, warn, bad, info or muted. */
export function badge(text, kind, attrs) {
  return h('span', { ...attrs, class: `badge ${kind}` }, text);
}

/**
 * A horizontal bar split into parts, each `{value, cls, title, attrs}`; parts share the
 * width by value. An empty bar (all zero) is drawn grey.
 */
export function stackedBar(parts, height = 14) {
  const total = parts.reduce((sum, p) => sum + Math.max(0, p.value), 0);
  const svg = s('svg', { class: 'bar', viewBox: `0 0 100 ${height}`, preserveAspectRatio: 'none', height, role: 'img' });
  svg.append(s('rect', { x: 0, y: 0, width: 100, height, class: 'bar-empty' }));
  let x = 0;
  for (const part of parts) {
    const width = total > 0 ? (100 * Math.max(0, part.value)) / total : 0;
    if (width <= 0) continue;
    svg.append(s('rect', { ...part.attrs, x, y: 0, width, height, class: part.cls }, s('title', {}, part.title || '')));
    x += width;
  }
  return svg;
}

/**
 * A progress bar: `value` out of `max`, with an optional marker at `threshold` (a value on
 * the same scale). `cls` colours the filled part.
 */
export function meter(value, max, { threshold, cls = 'fill-info', title } = {}) {
  const height = 10;
  const clamp = (v) => Math.min(100, Math.max(0, max > 0 ? (100 * v) / max : 0));
  const svg = s('svg', { class: 'meter', viewBox: `0 0 100 ${height}`, preserveAspectRatio: 'none', height, role: 'img' });
  svg.append(s('rect', { x: 0, y: 0, width: 100, height, class: 'bar-empty' }));
  svg.append(s('rect', { x: 0, y: 0, width: clamp(value), height, class: cls }));
  if (threshold !== undefined) {
    const x = clamp(threshold);
    svg.append(s('line', { x1: x, x2: x, y1: 0, y2: height, class: 'threshold' }));
  }
  if (title) svg.append(s('title', {}, title));
  return svg;
}

/** Seconds of a humantime duration as the API prints it: `30s`, `1m 30s`, `500ms`. */
export function parseDuration(text) {
  const units = { ns: 1e-9, us: 1e-6, ms: 1e-3, s: 1, m: 60, min: 60, h: 3600, d: 86400 };
  let total = 0;
  for (const [, n, unit] of String(text).matchAll(/(\d+(?:\.\d+)?)\s*([a-z]+)/g)) {
    total += Number(n) * (units[unit] ?? 0);
  }
  return total;
}

/** `8 s`, `2 min 5 s`, `1 h 3 min`. */
export function fmtDuration(seconds) {
  const sec = Math.max(0, Math.round(seconds));
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
  return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
}

/** Local wall-clock time of an RFC 3339 timestamp. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
}

/** `12 s ago` for an RFC 3339 timestamp, against `now` (ms, server clock). */
export function ago(iso, now) {
  const t = new Date(iso).getTime();
  return Number.isNaN(t) ? '' : `${fmtDuration((now - t) / 1000)} ago`;
}

/** `0 B`, `12.3 KiB`, `4.0 MiB`. */
export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** A `<dl>` of label → value pairs (values may be elements). */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
