// wormlog console: one page, no framework, no build step. Every view asks
// the collector's reading API (README, "The console"); the collector
// authenticates each call, holds it to the user's roles and writes it to
// its access log. Text from logs is never parsed as HTML: it is put in the
// page with textContent, after control, invisible and bidirectional
// characters are shown as escapes.
'use strict';

const S = { token: sessionStorage.getItem('wormlog-token'), me: null };
const NS = 1e6; // nanoseconds in a millisecond
const SVGNS = 'http://www.w3.org/2000/svg';

// ---- small helpers -------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}

// Log text as it may be shown: control characters, invisible and
// bidirectional marks become \u{…} escapes (a line cannot hide or reorder
// what follows it on the screen).
function safe(s) {
  if (s === null || s === undefined) return '';
  return String(s).replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g,
    (c) => '\\u{' + c.codePointAt(0).toString(16).padStart(4, '0') + '}');
}

function pad(n, w) { return String(n).padStart(w || 2, '0'); }

// A time (ns since the epoch, or RFC 3339 text) as "2026-12-05 10:11:12Z".
function fmt(t, withMs) {
  if (t === null || t === undefined) return '—';
  const d = typeof t === 'number' ? new Date(t / NS) : new Date(t);
  if (isNaN(d)) return String(t);
  let s = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  if (withMs) s += '.' + pad(d.getUTCMilliseconds(), 3);
  return s + 'Z';
}

function dur(ns) {
  const s = Math.round(ns / 1e9);
  if (s < 1) return `${Math.round(ns / 1e6)} ms`;
  const u = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  const out = [];
  let rest = s;
  for (const [n, name] of u) {
    if (rest >= n && out.length < 2) { out.push(`${Math.floor(rest / n)} ${name}`); rest %= n; }
  }
  return out.join(' ');
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

// A time typed by a person ("2026-03-01", "2026-03-01 14:00", RFC 3339) as
// RFC 3339 for the API; '' stays ''.
function typedTime(s) {
  s = (s || '').trim();
  if (!s) return '';
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return s + 'T00:00:00Z';
  const m = s.match(/^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2}(\.\d+)?)?)Z?$/);
  if (m) return `${m[1]}T${m[2].length === 5 ? m[2] + ':00' : m[2]}Z`;
  return s;
}

function hasRole(r) { return S.me && S.me.roles.includes(r); }
function canRead() { return hasRole('auditor'); }
function canSee() { return hasRole('auditor') || hasRole('admin'); }

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error)) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, opts) {
  const headers = Object.assign({}, (opts && opts.headers) || {});
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: 'same-origin', cache: 'no-store' }));
  if (r.status === 401 && S.me) { signOut('Your session is no longer valid: sign in again.'); }
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, body);
  }
  return r;
}

async function getJson(path) { return (await api(path)).json(); }

// Downloads what `path` answers as a file (the name the collector gives).
async function download(path, status) {
  status.textContent = 'Preparing the bundle…';
  try {
    const r = await api(path);
    const cd = r.headers.get('content-disposition') || '';
    const m = cd.match(/filename="([^"]+)"/);
    const name = m ? m[1] : 'bundle.wlbundle';
    const blob = await r.blob();
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = `Downloaded ${name} (${bytes(blob.size)}). Check it offline with:`;
    status.append(el('pre', { class: 'cmd', 'data-testid': 'check-command',
      text: `wormlog verify --bundle ${name} --pubkey '${S.pubkeys[S.agent] || 'ed25519:…'}'` +
        (S.collectorKey ? ` --collector-pubkey '${S.collectorKey}'` : '') }));
    status.dataset.downloaded = name;
  } catch (e) {
    status.textContent = 'The bundle could not be made: ' + e.message;
    status.classList.add('error');
  }
}

// ---- signing in and out --------------------------------------------------

async function signIn(token) {
  S.token = token || null;
  try {
    S.me = await getJson('/v1/whoami');
  } catch (e) {
    S.me = null;
    S.token = null;
    sessionStorage.removeItem('wormlog-token');
    return e;
  }
  if (S.token) sessionStorage.setItem('wormlog-token', S.token);
  return null;
}

function signOut(why) {
  S.token = null;
  S.me = null;
  sessionStorage.removeItem('wormlog-token');
  location.hash = '#/login';
  showLogin(why || '');
}

function showLogin(msg) {
  document.getElementById('view').hidden = true;
  document.getElementById('login').hidden = false;
  document.getElementById('nav').replaceChildren();
  document.getElementById('who').replaceChildren();
  document.getElementById('login-error').textContent = msg || '';
  document.getElementById('token').focus();
}

// ---- the frame: navigation and who is signed in --------------------------

function frame(route) {
  const nav = document.getElementById('nav');
  const links = [];
  if (canSee()) links.push(['#/fleet', 'Fleet', route.view === 'fleet']);
  if (route.agent && canSee()) {
    const a = encodeURIComponent(route.agent);
    links.push([`#/agent/${a}/timeline`, 'Timeline', route.view === 'timeline']);
    if (canRead()) {
      links.push([`#/agent/${a}/search`, 'Search', route.view === 'search' || route.view === 'record']);
      links.push([`#/agent/${a}/verify`, 'Verify & export', route.view === 'verify']);
    }
  }
  nav.replaceChildren(...links.map(([href, text, cur]) =>
    el('a', { href, 'aria-current': cur ? 'page' : null, text })));
  if (route.agent) nav.prepend(el('span', { class: 'agent-name', text: safe(route.agent) }));
  const who = document.getElementById('who');
  who.replaceChildren(
    el('span', { 'data-testid': 'user', text: `${S.me.user}` }),
    el('span', { class: 'roles', text: ` (${S.me.roles.join(', ') || 'no role'}, ${S.me.via})` }),
    el('button', { type: 'button', class: 'link', onclick: () => signOut('Signed out.'), text: 'Sign out' }));
}

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query] = h.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  const q = new URLSearchParams(query || '');
  if (parts[0] === 'agent' && parts[1]) {
    return { view: parts[2] || 'timeline', agent: parts[1], seq: parts[3], q };
  }
  return { view: parts[0] || 'fleet', q };
}

async function route() {
  if (!S.me) {
    const err = await signIn(S.token);
    if (err) { showLogin(S.token ? err.message : ''); return; }
  }
  const r = parseRoute();
  if (r.view === 'login') { location.hash = '#/fleet'; return; }
  document.getElementById('login').hidden = true;
  const view = document.getElementById('view');
  view.hidden = false;
  S.agent = r.agent;
  frame(r);
  if (!canSee()) {
    view.replaceChildren(el('h1', { text: 'No access' }),
      el('p', { 'data-testid': 'no-access', text:
        `The user ${S.me.user} (roles: ${S.me.roles.join(', ') || 'none'}) may not use the console: ` +
        'its views need the auditor role (records, search, verification, bundles) or the admin role (fleet and timelines only).' }));
    return;
  }
  const needsAuditor = ['search', 'record', 'verify'].includes(r.view);
  if (needsAuditor && !canRead()) {
    view.replaceChildren(el('h1', { text: 'Not allowed' }),
      el('p', { 'data-testid': 'not-allowed', text:
        `Reading records needs the auditor role; ${S.me.user} has ${S.me.roles.join(', ')}.` }));
    return;
  }
  view.replaceChildren(el('p', { class: 'loading', text: 'Loading…' }));
  try {
    if (r.view === 'fleet') await fleetView(view);
    else if (r.view === 'timeline') await timelineView(view, r);
    else if (r.view === 'search') await searchView(view, r);
    else if (r.view === 'record') await recordView(view, r);
    else if (r.view === 'verify') await verifyView(view, r);
    else view.replaceChildren(el('h1', { text: 'Not found' }), el('p', { text: 'No such view.' }));
  } catch (e) {
    view.replaceChildren(el('h1', { text: 'Error' }),
      el('p', { class: 'error', role: 'alert', 'data-testid': 'error', text: `${e.status ? e.status + ': ' : ''}${e.message}` }));
  }
  document.getElementById('main').focus({ preventScroll: true });
}

// ---- fleet overview ------------------------------------------------------

S.pubkeys = {};

async function fleetView(view) {
  const [ov, list] = await Promise.all([getJson('/v1/overview'), getJson('/v1/agents')]);
  for (const a of list.agents) S.pubkeys[a.agent] = a.pubkey;
  S.collectorKey = ov.collector_pubkey;
  const problems = ov.agents.filter((a) => a.severity >= 2).length;
  const rows = ov.agents.map((a) => {
    const sev = a.severity || 0;
    const link = `#/agent/${encodeURIComponent(a.agent)}/timeline`;
    const ver = a.verification;
    const sch = a.scheduled_verification;
    return el('tr', { class: `sev-${sev}`, 'data-agent': a.agent, 'data-severity': sev },
      el('th', { scope: 'row' }, el('a', { href: link, text: safe(a.agent) })),
      el('td', { class: 'status' },
        sev === 0 ? el('span', { class: 'ok', text: 'watching' })
          : el('ul', { class: 'problems' }, a.problems.map((p) =>
            el('li', { class: `sev-${p.severity}`, text: p.text })))),
      el('td', { text: fmt(a.last_record) }),
      el('td', { text: fmt(a.last_receipt) }),
      el('td', { text: a.behind_records === null || a.behind_records === undefined ? '—' : `${a.behind_records} records` }),
      el('td', { text: sch ? `${sch.ok ? 'ok' : 'FAILED'} ${fmt(sch.at)}` : 'not yet' }),
      el('td', { text: ver ? `${ver.ok ? 'ok' : 'FAILED'} ${fmt(ver.at)} (${ver.user})` : 'never' }),
      el('td', { class: 'num', text: (a.records || 0).toLocaleString('en') }));
  });
  view.replaceChildren(
    el('h1', { text: 'Fleet' }),
    ov.bucket_error ? el('p', { class: 'error', role: 'alert', text: `The bucket could not be listed: ${ov.bucket_error}` }) : el('span'),
    el('p', { class: 'summary' },
      `${ov.agents.length} agent(s) on collector ${ov.collector}; `,
      el('strong', { 'data-testid': 'problem-count', text: `${problems} need attention` }),
      `. Nothing received for ${dur(ov.late_after_seconds * 1e9)} (or twice an agent's heartbeat) makes an agent a problem. As of ${fmt(ov.now)}. `,
      el('button', { type: 'button', onclick: () => route(), text: 'Refresh' })),
    el('table', { class: 'fleet', 'data-testid': 'fleet' },
      el('thead', {}, el('tr', {}, ['Agent', 'Status', 'Last record', 'Last receipt', 'Behind',
        'Scheduled verification', 'Last verification (console)', 'Records'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows)));
}

// ---- timeline ------------------------------------------------------------

const DAY = 86400e9;
const BEFORE = 'before the log began';

// An axis label for time t in a range `span` long.
function tickText(t, span) {
  const s = fmt(t);
  if (span > 2 * DAY) return s.slice(0, 10);
  if (span > 2 * 3600e9) return s.slice(5, 16);
  return s.slice(11, 19);
}
const EVENT_STYLE = {
  gap: ['Gap (something could not be read)', 'ev-gap'],
  silence: ['Not watching', 'ev-silence'],
  start: ['Start', 'ev-start'],
  stop: ['Clean stop', 'ev-stop'],
  clock_step: ['Clock step', 'ev-clock'],
  epoch_key: ['Key epoch', 'ev-epoch'],
  recovery: ['Recovery (damage found at start)', 'ev-recovery'],
  alert: ['Alert', 'ev-alert'],
  config: ['Configuration', 'ev-config'],
  prune: ['Prune', 'ev-config'],
  fork: ['Fork received', 'ev-fork'],
};

function rangeOf(r, tl) {
  const now = Date.now() * NS;
  let to = Number(r.q.get('to')) || now;
  let from = Number(r.q.get('from')) || to - DAY;
  if (from >= to) from = to - DAY;
  return [from, to];
}

function timelineHash(agent, from, to) {
  return `#/agent/${encodeURIComponent(agent)}/timeline?from=${Math.round(from)}&to=${Math.round(to)}`;
}

async function timelineView(view, r) {
  const [from, to] = rangeOf(r);
  const tl = await getJson(`/v1/agents/${encodeURIComponent(r.agent)}/timeline?from=${Math.round(from)}&to=${Math.round(to)}&buckets=240`);
  const go = (f, t) => { location.hash = timelineHash(r.agent, f, t); };
  const span = to - from;
  const mid = from + span / 2;
  const zoom = (k) => go(mid - span * k / 2, mid + span * k / 2);
  const pan = (k) => go(from + span * k, to + span * k);
  const now = tl.now;
  const presets = [['Hour', 3600e9], ['Day', DAY], ['Week', 7 * DAY], ['Month', 30 * DAY], ['Year', 365 * DAY]];
  const controls = el('div', { class: 'controls', role: 'toolbar', 'aria-label': 'Time range' },
    presets.map(([n, w]) => el('button', { type: 'button', onclick: () => go(now - w, now), text: `Last ${n.toLowerCase()}` })),
    el('button', { type: 'button', onclick: () => go((tl.first_ts || now - DAY) - 60e9, now + 60e9), text: 'All' }),
    el('button', { type: 'button', 'aria-label': 'Zoom in', onclick: () => zoom(0.5), text: '+' }),
    el('button', { type: 'button', 'aria-label': 'Zoom out', onclick: () => zoom(2), text: '−' }),
    el('button', { type: 'button', 'aria-label': 'Earlier', onclick: () => pan(-0.5), text: '←' }),
    el('button', { type: 'button', 'aria-label': 'Later', onclick: () => pan(0.5), text: '→' }));
  // Coverage counts from the log's first record on.
  const since = Math.max(from, tl.first_ts ?? to);
  const watched = Math.max(0, Math.min(to, now) - since);
  const dark = tl.uncovered.filter((u) => u.cause !== BEFORE)
    .reduce((s, u) => s + Math.max(0, Math.min(u.to, now) - Math.max(u.from, since)), 0);
  const cover = watched > 0 ? Math.max(0, 100 * (1 - dark / watched)) : 0;
  const chart = drawTimeline(tl, from, to, go);
  chart.addEventListener('keydown', (e) => {
    const k = { '+': () => zoom(0.5), '=': () => zoom(0.5), '-': () => zoom(2), ArrowLeft: () => pan(-0.25), ArrowRight: () => pan(0.25) }[e.key];
    if (k) { e.preventDefault(); k(); }
  });
  const uncoveredRows = tl.uncovered.map((u) => el('tr', { 'data-cause': u.cause, 'data-from': u.from, 'data-to': u.to },
    el('td', { text: fmt(u.from) }), el('td', { text: fmt(u.to) }), el('td', { text: dur(u.to - u.from) }),
    el('td', { text: u.cause })));
  const events = tl.events.concat((tl.forks || []).map((f) => ({ class: 'fork', ts: f.ts, cause: 'fork', text: `first differing record ${f.first_differing_seq}`, seq: null })));
  events.sort((a, b) => a.ts - b.ts);
  const shown = events.filter((e) => e.class !== 'silence').slice(0, 1000);
  const eventRows = shown.map((e) => el('tr', { class: (EVENT_STYLE[e.class] || [])[1], 'data-class': e.class, 'data-cause': e.cause, 'data-ts': e.ts },
    el('td', { text: fmt(e.ts, true) }),
    el('td', { text: (EVENT_STYLE[e.class] || [e.class])[0] }),
    el('td', { text: e.cause || '' }),
    el('td', { class: 'detail', text: safe(eventText(e)) }),
    el('td', {}, e.seq !== null && e.seq !== undefined && canRead()
      ? el('a', { href: `#/agent/${encodeURIComponent(r.agent)}/record/${e.seq}`, text: String(e.seq) })
      : String(e.seq ?? ''))));
  view.replaceChildren(
    el('h1', {}, 'Timeline of ', el('span', { class: 'agent', text: safe(r.agent) })),
    el('p', { class: 'summary', 'data-testid': 'coverage' },
      `${fmt(from)} to ${fmt(to)} (${dur(span)}): watching ${cover.toFixed(cover > 99.9 && cover < 100 ? 3 : 1)}% of the time since the log began; `,
      `${tl.uncovered.filter((u) => u.cause !== BEFORE).length} stretch(es) not watched, ${tl.events_total} event(s)` +
      (tl.events_shown < tl.events_total ? ` (${tl.events_shown} shown: key epochs are left out first)` : '') + '. ',
      `Records: ${tl.records.toLocaleString('en')}, last at ${fmt(tl.last_ts)}; heartbeat every ${dur(tl.heartbeat_ns)}.`),
    controls, chart, legend(),
    el('h2', { text: 'Not watching' }),
    tl.uncovered.length
      ? el('table', { class: 'uncovered', 'data-testid': 'uncovered' },
        el('thead', {}, el('tr', {}, ['From', 'To', 'For', 'Why'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, uncoveredRows))
      : el('p', { 'data-testid': 'uncovered', text: 'The agent was watching the whole range.' }),
    el('h2', { text: 'Events' }),
    shown.length
      ? el('table', { class: 'events', 'data-testid': 'events' },
        el('thead', {}, el('tr', {}, ['Time', 'What', 'Cause', 'Detail', 'Record'].map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, eventRows))
      : el('p', { text: 'No event in this range.' }));
}

function eventText(e) {
  switch (e.class) {
    case 'gap': {
      const n = [];
      if (e.b >= 0) n.push(`${e.b} record(s) lost`);
      if (e.a >= 0) n.push(`${bytes(e.a)} lost`);
      return `${e.text}${n.length ? ' — ' + n.join(', ') : ''}`;
    }
    case 'clock_step': return `wall clock moved by ${dur(Math.abs(e.b - e.a))} ${e.b < e.a ? 'back' : 'forward'} (expected ${fmt(e.a)}, got ${fmt(e.b)})`;
    case 'epoch_key': return `key epoch ${e.a} begins`;
    case 'start': return `${e.text} (pid ${e.a}), ${e.cause}`;
    case 'config': return `configuration sha256 ${e.text.slice(0, 16)}…`;
    default: return e.text || '';
  }
}

function legend() {
  const items = [['cov-on', 'watching'], ['cov-off', 'not watching'], ['ev-gap', 'gap'], ['ev-start', 'start'],
    ['ev-stop', 'clean stop'], ['ev-unclean', 'unclean stop'], ['ev-clock', 'clock step'], ['ev-alert', 'alert / recovery'],
    ['ev-epoch', 'key epoch'], ['ev-fork', 'fork']];
  return el('ul', { class: 'legend', 'aria-label': 'Legend' },
    items.map(([c, t]) => el('li', {}, el('span', { class: `swatch ${c}` }), t)));
}

// The chart: an axis, the watching lane (green where records kept coming,
// marked where nobody watched and why), the records per bucket, and the
// events. Drag across it to zoom to a range.
function drawTimeline(tl, from, to, go) {
  const W = 1000, H = 150;
  const x = (t) => Math.max(0, Math.min(W, (t - from) / (to - from) * W));
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'timeline', role: 'img', preserveAspectRatio: 'none',
    'aria-label': `Timeline from ${fmt(from)} to ${fmt(to)}: ${tl.uncovered.length} stretch(es) not watched, ${tl.events_total} event(s)` });
  // Axis ticks.
  const ticks = 8;
  for (let i = 0; i <= ticks; i++) {
    const t = from + (to - from) * i / ticks;
    root.append(svg('line', { x1: x(t), x2: x(t), y1: 14, y2: H, class: 'grid' }));
    const label = svg('text', { x: Math.min(W - 2, Math.max(2, x(t))), y: 11, class: 'tick', 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' });
    label.textContent = tickText(t, to - from);
    root.append(label);
  }
  // Watching lane.
  const lane = 22, laneH = 26;
  const known0 = tl.first_ts === null ? to : Math.max(from, tl.first_ts);
  const known1 = Math.min(to, tl.now);
  if (known1 > known0) root.append(svg('rect', { x: x(known0), y: lane, width: Math.max(0.5, x(known1) - x(known0)), height: laneH, class: 'cov-on' }));
  for (const u of tl.uncovered) {
    const r = svg('rect', { x: x(u.from), y: lane, width: Math.max(1, x(u.to) - x(u.from)), height: laneH,
      class: u.cause === BEFORE ? 'cov-none' : 'cov-off', 'data-cause': u.cause });
    r.append(svg('title', {}, document.createTextNode(`not watching ${fmt(u.from)} – ${fmt(u.to)} (${dur(u.to - u.from)}): ${u.cause}`)));
    root.append(r);
  }
  const lbl = svg('text', { x: 4, y: lane + 17, class: 'lane' });
  lbl.textContent = 'watching';
  root.append(lbl);
  // Records per bucket.
  const act = tl.activity || [];
  const max = Math.max(1, ...act);
  const bw = W / Math.max(1, act.length);
  const base = 100, ah = 44;
  act.forEach((n, i) => {
    if (!n) return;
    const h = Math.max(1, Math.sqrt(n / max) * ah);
    root.append(svg('rect', { x: i * bw, y: base - h, width: Math.max(0.5, bw - 0.3), height: h, class: 'act' }));
  });
  const al = svg('text', { x: 4, y: 62, class: 'lane' });
  al.textContent = `records (max ${max.toLocaleString('en')} per ${dur((to - from) / Math.max(1, act.length))})`;
  root.append(al);
  // Events.
  const ey = 118;
  const marks = tl.events.concat((tl.forks || []).map((f) => ({ class: 'fork', ts: f.ts, cause: 'fork', text: '' })));
  for (const e of marks) {
    if (e.class === 'silence') continue;
    let cls = (EVENT_STYLE[e.class] || ['', 'ev-other'])[1];
    if (e.class === 'start' && e.code === 0) cls = 'ev-unclean';
    const cx = x(e.ts);
    const m = e.class === 'epoch_key' || e.class === 'config'
      ? svg('line', { x1: cx, x2: cx, y1: ey + 14, y2: ey + 24, class: `mark ${cls}` })
      : e.class === 'gap' || e.class === 'alert' || e.class === 'recovery' || e.class === 'fork'
        ? svg('path', { d: `M${cx} ${ey - 6} l6 11 h-12 z`, class: `mark ${cls}` })
        : svg('rect', { x: cx - 1.5, y: ey - 6, width: 3, height: 14, class: `mark ${cls}` });
    m.append(svg('title', {}, document.createTextNode(`${fmt(e.ts, true)} ${(EVENT_STYLE[e.class] || [e.class])[0]}${e.cause ? ': ' + e.cause : ''} ${safe(eventText(e))}`)));
    root.append(m);
  }
  const el2 = svg('text', { x: 4, y: ey + 22 + 8, class: 'lane' });
  el2.textContent = 'events';
  root.append(el2);
  // Drag to zoom.
  const sel = svg('rect', { x: 0, y: 14, width: 0, height: H - 14, class: 'sel' });
  root.append(sel);
  let x0 = null;
  const px = (ev) => { const b = root.getBoundingClientRect(); return (ev.clientX - b.left) / b.width * W; };
  root.addEventListener('pointerdown', (ev) => { x0 = px(ev); root.setPointerCapture(ev.pointerId); });
  root.addEventListener('pointermove', (ev) => {
    if (x0 === null) return;
    const x1 = px(ev);
    sel.setAttribute('x', Math.min(x0, x1)); sel.setAttribute('width', Math.abs(x1 - x0));
  });
  root.addEventListener('pointerup', (ev) => {
    if (x0 === null) return;
    const x1 = px(ev);
    const a = Math.min(x0, x1), b = Math.max(x0, x1);
    x0 = null;
    sel.setAttribute('width', 0);
    if (b - a > 4) go(from + (to - from) * a / W, from + (to - from) * b / W);
  });
  const wrap = el('div', { class: 'chart', tabindex: '0', 'data-testid': 'timeline',
    'aria-label': 'Timeline. Keys: + and − zoom, ← and → move; drag across to zoom to a range.' });
  wrap.append(root);
  return wrap;
}

// ---- search --------------------------------------------------------------

async function searchView(view, r) {
  const q = r.q;
  const agent = r.agent;
  const form = el('form', { class: 'search', role: 'search' },
    el('label', {}, 'Text ', el('input', { name: 'text', id: 'search-text', value: q.get('text') || '', size: 28, placeholder: 'whole words, e.g. patient-4711' })),
    el('label', {}, 'Source ', el('input', { name: 'source', value: q.get('source') || '', size: 10 })),
    el('label', {}, 'From ', el('input', { name: 'from', value: q.get('from') || '', size: 20, placeholder: '2026-03-01 or …T08:00Z' })),
    el('label', {}, 'To ', el('input', { name: 'to', value: q.get('to') || '', size: 20 })),
    el('label', {}, 'Kind ', kindSelect(q.get('kind') || '')),
    el('label', {}, 'Order ', el('select', { name: 'order' },
      el('option', { value: 'newest', selected: q.get('order') !== 'oldest', text: 'newest first' }),
      el('option', { value: 'oldest', selected: q.get('order') === 'oldest', text: 'oldest first' }))),
    el('button', { type: 'submit', text: 'Search' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    location.hash = `#/agent/${encodeURIComponent(agent)}/search?${p}`;
  });
  const parts = [el('h1', {}, 'Search ', el('span', { class: 'agent', text: safe(agent) })), form];
  const asked = ['text', 'source', 'from', 'to', 'kind', 'cursor', 'order'].some((k) => q.get(k));
  if (!asked) {
    parts.push(el('p', { class: 'hint', text: 'Search whole words in the bodies and fields (an entry encrypted at rest is searched only where the collector has a read identity), or leave the text empty to list records by time. Press / to come back to the text box.' }));
    view.replaceChildren(...parts);
    document.getElementById('search-text').focus();
    return;
  }
  const p = new URLSearchParams({ limit: '50' });
  for (const k of ['text', 'source', 'kind', 'order', 'cursor']) if (q.get(k)) p.set(k, q.get(k));
  for (const k of ['from', 'to']) if (q.get(k)) p.set(k, typedTime(q.get(k)));
  const res = await getJson(`/v1/agents/${encodeURIComponent(agent)}/records?${p}`);
  const rows = res.records.map((rec) => el('tr', { 'data-seq': rec.seq },
    el('td', { class: 'num' }, el('a', { href: `#/agent/${encodeURIComponent(agent)}/record/${rec.seq}`, text: String(rec.seq) })),
    el('td', { text: fmt(rec.ts, true) }),
    el('td', { text: safe(rec.source || rec.kind) }),
    el('td', { class: 'body' }, bodyPreview(rec))));
  parts.push(el('p', { class: 'summary', 'data-testid': 'result-count' },
    `${res.records.length} record(s)${res.next_cursor !== null ? ' on this page' : ''}; ${res.blocks_read} block(s) read, ${res.blocks_skipped} skipped by the index.`,
    res.note ? el('span', { class: 'note', text: ' ' + res.note }) : null));
  if (rows.length) {
    parts.push(el('table', { class: 'results', 'data-testid': 'results' },
      el('thead', {}, el('tr', {}, ['Seq', 'Time', 'Source', 'Body'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows)));
  }
  const pager = el('div', { class: 'pager' });
  if (q.get('cursor')) pager.append(el('button', { type: 'button', onclick: () => history.back(), text: '← Previous page' }));
  if (res.next_cursor !== null && res.next_cursor !== undefined) {
    const n = new URLSearchParams(q);
    n.set('cursor', res.next_cursor);
    pager.append(el('a', { class: 'button', href: `#/agent/${encodeURIComponent(agent)}/search?${n}`, text: 'Next page →' }));
  }
  parts.push(pager);
  view.replaceChildren(...parts);
}

function kindSelect(cur) {
  const kinds = ['', 'entry', 'gap', 'start', 'stop', 'heartbeat', 'checkpoint', 'receipt', 'alert', 'clock_step', 'recovery', 'config', 'epoch_key'];
  return el('select', { name: 'kind' }, kinds.map((k) => el('option', { value: k, selected: k === cur, text: k || 'any' })));
}

function bodyPreview(rec) {
  if (rec.kind !== 'entry') return el('span', { class: 'meta', text: rec.kind });
  if (rec.encrypted && !rec.decrypted) return el('span', { class: 'meta', text: `(encrypted: ${rec.encrypted_bytes} bytes)` });
  const body = rec.body !== undefined && rec.body !== null ? rec.body : `(binary, base64) ${rec.body_base64}`;
  const s = safe(body);
  return el('span', { text: s.length > 300 ? s.slice(0, 300) + '…' : s });
}

// The agent's first public key and the collector's receipt key, for the
// command that checks a downloaded bundle.
async function knowKeys(agent) {
  if (S.pubkeys[agent] && S.collectorKey) return;
  try {
    const [ov, list] = await Promise.all([getJson('/v1/overview'), getJson('/v1/agents')]);
    for (const a of list.agents) S.pubkeys[a.agent] = a.pubkey;
    S.collectorKey = ov.collector_pubkey;
  } catch (_) { /* the command shows … instead */ }
}

// ---- one record ----------------------------------------------------------

async function recordView(view, r) {
  const agent = r.agent;
  const rec = await getJson(`/v1/agents/${encodeURIComponent(agent)}/records/${encodeURIComponent(r.seq)}`);
  await knowKeys(agent);
  const dl = [];
  const row = (k, v) => { dl.push(el('dt', { text: k }), el('dd', {}, v)); };
  row('Agent', safe(agent));
  row('Sequence number', String(rec.seq));
  row('Kind', rec.kind);
  row('Time', fmt(rec.ts, true));
  if (rec.source) row('Source', safe(rec.source));
  row('Stored at', `segment ${rec.segment}, offset ${rec.offset} (${rec.frame_bytes} bytes, record SHA-256 ${rec.record_sha256})`);
  if (rec.position) row('Position at the source', el('code', { text: safe(JSON.stringify(rec.position)) }));
  if (rec.flags) row('Flags', rec.flags.join(', '));
  if (rec.encrypted) row('Encrypted at rest', rec.decrypted ? 'yes — opened with the collector\'s read identity for you' : `yes — not opened (${rec.encrypted_bytes} bytes)`);
  const cs = rec.countersigned || {};
  if (cs.checkpoint) {
    row('Checkpoint', `record ${cs.checkpoint.seq} at ${fmt(cs.checkpoint.ts, true)}, tree size ${cs.checkpoint.tree_size}, key epoch ${cs.checkpoint.epoch}, root ${cs.checkpoint.root}`);
    row('Receipts', el('ul', {}, (cs.receipts || []).map((x) =>
      el('li', { text: `${x.collector_id || 'collector'} at ${fmt(x.collector_ts)} (key ${x.collector_pubkey || ''})` }))));
  } else if (cs.pending) {
    row('Checkpoint', cs.pending);
  }
  const body = rec.body !== undefined && rec.body !== null ? rec.body : rec.body_base64 !== undefined ? `(binary, base64) ${rec.body_base64}` : null;
  const status = el('div', { class: 'download', 'aria-live': 'polite', 'data-testid': 'download-status' });
  const a = encodeURIComponent(agent);
  const buttons = el('div', { class: 'actions' });
  if (rec.kind === 'entry') {
    buttons.append(el('button', { type: 'button', 'data-testid': 'disclose', onclick: () => download(`/v1/agents/${a}/records/${rec.seq}/disclosure`, status),
      text: 'Download the disclosure bundle (this entry only)' }));
  }
  const lo = Math.max(0, rec.seq - 50);
  const hi = Math.max(rec.seq, Math.min(rec.seq + 50, rec.countersigned_tree_size ?? rec.seq));
  buttons.append(el('button', { type: 'button', 'data-testid': 'export-around', onclick: () => download(`/v1/agents/${a}/export?from_seq=${lo}&to_seq=${hi}`, status),
    text: `Download an export of records ${lo}–${hi}` }));
  view.replaceChildren(...[
    el('h1', {}, `Record ${rec.seq} of `, el('span', { class: 'agent', text: safe(agent) })),
    el('p', {}, el('button', { type: 'button', class: 'link', onclick: () => history.back(), text: '← Back' })),
    body !== null ? el('pre', { class: 'record-body', 'data-testid': 'record-body', text: safe(body) }) : null,
    rec.fields ? el('pre', { class: 'fields', text: safe(JSON.stringify(rec.fields, null, 2)) }) : null,
    el('dl', { class: 'record' }, dl),
    buttons, status,
    el('p', { class: 'hint', text: 'A disclosure bundle holds this entry, its own key if it is encrypted (no other entry can be read with it), its inclusion proof in the countersigned checkpoint and the receipts: anyone with the host\'s public key checks it offline.' }),
  ].filter(Boolean));
}

// ---- verify and export ---------------------------------------------------

async function verifyView(view, r) {
  const agent = r.agent;
  await knowKeys(agent);
  const a = encodeURIComponent(agent);
  const progress = el('progress', { max: '1', value: '0', 'aria-label': 'Verification progress' });
  const state = el('p', { 'data-testid': 'verify-state', 'aria-live': 'polite' });
  const result = el('div', { 'data-testid': 'verify-result' });
  const show = (j) => {
    if (j.total_bytes) { progress.max = j.total_bytes; progress.value = Math.min(j.bytes, j.total_bytes); }
    if (j.state === 'running') {
      state.textContent = `Verifying… ${j.records.toLocaleString('en')} records, ${bytes(j.bytes)} of ${bytes(j.total_bytes)} (started ${fmt(j.started)} by ${j.user})`;
    } else if (j.result) {
      const v = j.result;
      progress.value = progress.max;
      state.textContent = j.state === 'done' ? `Done: started ${fmt(j.started)} by ${j.user}.` : `Last verification from the console: ${fmt(v.at)} by ${v.user}.`;
      result.className = v.ok ? 'verdict good' : 'verdict bad';
      result.dataset.ok = v.ok;
      result.replaceChildren(
        el('strong', { text: v.ok ? 'The chain verifies.' : 'The chain does NOT verify.' }),
        el('p', { text: v.ok
          ? `${(v.records || 0).toLocaleString('en')} records (${(v.entries || 0).toLocaleString('en')} entries, ${v.checkpoints} checkpoints) from ${fmt(v.first_ts)} to ${fmt(v.last_ts)}; every hash, signature and key epoch checked against the registered public key. Tree size ${v.tree_size}, root ${v.root}.`
          : (v.failure ? `At segment ${v.failure.segment}, offset ${v.failure.offset}, record ${v.failure.seq}: ${v.failure.reason}` : v.error || 'see the collector\'s log') }));
    } else {
      state.textContent = 'No verification was run from the console yet.';
    }
  };
  let timer = null;
  const poll = async () => {
    try {
      const j = await getJson(`/v1/agents/${a}/verifications/latest`);
      show(j);
      if (j.state === 'running' && parseRoute().view === 'verify') timer = setTimeout(poll, 1000);
    } catch (e) { state.textContent = 'Progress unavailable: ' + e.message; }
  };
  const start = el('button', { type: 'button', 'data-testid': 'verify-start', onclick: async () => {
    clearTimeout(timer);
    result.replaceChildren();
    try {
      const j = await (await api(`/v1/agents/${a}/verifications`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).json();
      show(j);
      timer = setTimeout(poll, 500);
    } catch (e) { state.textContent = 'Could not start: ' + e.message; }
  }, text: 'Verify the whole chain now' });
  const status = el('div', { class: 'download', 'aria-live': 'polite', 'data-testid': 'download-status' });
  const from = el('input', { id: 'from-seq', inputmode: 'numeric', size: 10, value: r.q.get('from_seq') || '0' });
  const to = el('input', { id: 'to-seq', inputmode: 'numeric', size: 10, value: r.q.get('to_seq') || '' });
  const exp = el('form', { class: 'export' },
    el('label', { for: 'from-seq', text: 'From record ' }), from,
    el('label', { for: 'to-seq', text: ' to record ' }), to,
    el('button', { type: 'submit', text: 'Download the export bundle' }));
  exp.addEventListener('submit', (e) => {
    e.preventDefault();
    download(`/v1/agents/${a}/export?from_seq=${encodeURIComponent(from.value.trim())}&to_seq=${encodeURIComponent(to.value.trim())}`, status);
  });
  view.replaceChildren(
    el('h1', {}, 'Verify and export ', el('span', { class: 'agent', text: safe(agent) })),
    el('p', { text: 'The collector reads the agent\'s whole chain as it keeps it and checks every record\'s hash link, every checkpoint\'s signature and Merkle root, and every key epoch against the public key it registered. The result is kept and shown in the fleet overview.' }),
    el('div', { class: 'actions' }, start), progress, state, result,
    el('h2', { text: 'Export a range' }),
    el('p', { text: 'An export bundle holds the records of the range whole, from the checkpoint before it to the countersigned checkpoint after it, with the receipts and a consistency proof to the newest countersigned tree.' }),
    exp, status);
  await poll();
}

// ---- start ---------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = document.getElementById('token');
    const err = await signIn(t.value.trim());
    t.value = '';
    if (err) { showLogin(err.status === 401 ? 'That token is not valid here.' : err.message); return; }
    if (!location.hash || location.hash === '#/login') location.hash = '#/fleet'; else route();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      const s = document.getElementById('search-text');
      if (s) { e.preventDefault(); s.focus(); }
    }
  });
  window.addEventListener('hashchange', route);
  route();
});
