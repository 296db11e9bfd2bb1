// tidepool console: one page that talks to this daemon's public HTTP API.
//
// Invariants:
// - Every call goes through `api()`: same routes, same keys and the same
//   read-only checks as any client. The key lives only in this tab's
//   sessionStorage.
// - Data from the node (names, attributes, errors) is only ever put in the
//   page as text (`h()` sets textContent), never as HTML.
// - Write controls are rendered only when the key may write (`canWrite()`);
//   destructive ones ask for the namespace's name first.
// - No request the page makes on its own is expected to fail: it asks
//   `/v1/whoami` what the node offers before using models, sync or recall.
'use strict';

const KEY_STORE = 'tidepool.key';
const POLL_MS = 2000;
const CHART_POINTS = 60;
const ui = { who: null, timers: [], metrics: null };

// ---------- DOM helpers ----------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

const $ = (sel) => document.querySelector(sel);

// Replace `el`'s children (nested arrays flattened; null/false skipped).
function replace(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
}

function mount(...kids) {
  replace($('#main'), ...kids);
}

// ---------- formatting ----------

function fmtBytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

const fmtNum = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'));

function shorten(v) {
  if (Array.isArray(v) && v.length > 6 && v.every((x) => typeof x === 'number')) {
    return `[${v.slice(0, 4).map((x) => +x.toFixed(4)).join(', ')}, … ${v.length} dims]`;
  }
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

// A document with every vector written short (the detail view).
function shortVectors(doc) {
  const out = {};
  for (const [k, v] of Object.entries(doc)) out[k] = Array.isArray(v) && v.length > 6 && v.every((x) => typeof x === 'number') ? shorten(v) : v;
  return out;
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}`, text });
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function key() {
  return sessionStorage.getItem(KEY_STORE) || '';
}

async function api(method, path, body, opts = {}) {
  const headers = {};
  if (key()) headers.authorization = `Bearer ${key()}`;
  let payload;
  if (body instanceof Blob) {
    headers['content-type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  const text = await resp.text();
  if (!resp.ok) {
    let message = text;
    try { message = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, `${method} ${path}: ${resp.status} ${message}`);
  }
  return opts.text ? text : (text ? JSON.parse(text) : {});
}

const nsPath = (ns) => encodeURIComponent(ns);
const canWrite = () => ui.who && ui.who.authenticated !== false && !ui.who.read_only;

function showError(e) {
  const box = $('#error');
  box.textContent = e instanceof Error ? e.message : String(e);
  box.hidden = false;
}

function clearError() {
  $('#error').hidden = true;
}

async function guarded(fn) {
  try {
    clearError();
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  }
}

// ---------- key and identity ----------

async function loadWho() {
  ui.who = await api('GET', '/v1/whoami');
  const who = $('#who');
  if (ui.who.authenticated === false) {
    who.textContent = 'no key';
  } else {
    const mode = ui.who.auth === 'open' ? 'open (loopback)' : (ui.who.read_only ? 'read-only key' : 'read-write key');
    who.textContent = `${ui.who.org}/${ui.who.project} · ${mode} · v${ui.who.version}`;
  }
  $('#key-button').hidden = ui.who.auth === 'open';
}

function setupKeyDialog() {
  const dialog = $('#key-dialog');
  $('#key-button').addEventListener('click', () => {
    $('#key-input').value = '';
    dialog.returnValue = '';
    dialog.showModal();
  });
  dialog.addEventListener('close', () => guarded(async () => {
    if (dialog.returnValue === 'save' && $('#key-input').value.trim()) {
      sessionStorage.setItem(KEY_STORE, $('#key-input').value.trim());
    } else if (dialog.returnValue === 'clear') {
      sessionStorage.removeItem(KEY_STORE);
    } else {
      return;
    }
    await loadWho();
    await render();
  }));
}

// Ask for a name; `action(name)` runs once `accept(name)` holds and the user confirms.
function askForName(title, text, accept, action) {
  const dialog = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  const input = $('#confirm-name');
  const ok = $('#confirm-ok');
  input.value = '';
  ok.disabled = true;
  input.oninput = () => { ok.disabled = !accept(input.value); };
  dialog.onclose = () => {
    if (dialog.returnValue === 'ok' && accept(input.value)) guarded(() => action(input.value));
  };
  dialog.returnValue = '';
  dialog.showModal();
}

// A destructive action runs only once the namespace's name is typed.
function confirmByName(title, text, name, action) {
  askForName(title, `${text} Type the namespace name "${name}" to confirm.`, (v) => v === name, action);
}

// ---------- routing ----------

function stopTimers() {
  ui.timers.forEach(clearInterval);
  ui.timers = [];
}

// When a view has drawn its data: ms since the page started loading (tests and
// bench/console_load.py wait for it).
function markRendered() {
  document.body.dataset.rendered = performance.now().toFixed(1);
}

async function render() {
  stopTimers();
  clearError();
  delete document.body.dataset.rendered;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  document.querySelectorAll('nav a').forEach((a) => a.classList.remove('active'));
  if (!ui.who || ui.who.authenticated === false) {
    mount(h('h1', { text: 'API key needed' }),
      h('p', { text: 'This node has API keys. Enter one with the "API key" button to see its namespaces.' }));
    return;
  }
  if (parts[0] === 'health') {
    $('#nav-health').classList.add('active');
    return viewHealth();
  }
  $('#nav-namespaces').classList.add('active');
  if (parts[0] === 'ns' && parts[1]) return viewNamespace(parts[1], parts[2] || 'overview');
  return viewNamespaces();
}

// ---------- namespaces list ----------

// Every namespace of the project with its metadata, a page (1000) per request.
async function listAll() {
  const entries = [];
  let cursor = null;
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await api('GET', `/v1/namespaces?page_size=1000&include_metadata=true${q}`);
    entries.push(...page.namespaces);
    cursor = page.next_cursor;
  } while (cursor && entries.length < 10000);
  return entries;
}

// Run `fn` over `items`, at most `limit` at once.
async function pooled(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function viewNamespaces() {
  mount(h('h1', { text: 'Namespaces' }), h('p', { class: 'muted', text: 'Loading…' }));
  await guarded(async () => {
    const entries = await listAll();
    const names = entries.map((e) => e.id);
    const rows = entries.map((e) => namespaceRow(e.id, e.metadata, e.metadata_error));
    mount(
      h('div', { class: 'row' }, h('h1', { text: 'Namespaces' }), canWrite() ? restoreControl(names) : null),
      h('p', { class: 'muted', text: `${names.length} namespace${names.length === 1 ? '' : 's'} in ${ui.who.org}/${ui.who.project}` }),
      h('table', { id: 'ns-table' },
        h('thead', {}, h('tr', {}, ['Namespace', 'Documents', 'Bytes', 'Index', 'Cache', 'Labels', 'Parent']
          .map((t, i) => h('th', { class: i === 1 || i === 2 ? 'num' : '', text: t })))),
        h('tbody', {}, rows)),
    );
    markRendered();
  });
}

function indexBadge(index) {
  if (!index) return '—';
  if (index.status === 'up-to-date') return badge('up-to-date', 'ok');
  return h('span', {}, badge(index.status, 'warn'), ` ${fmtNum(index.unindexed_rows)} rows (${fmtBytes(index.unindexed_bytes)}) unindexed`);
}

function cacheCell(m) {
  const c = m.cache || {};
  return h('span', {}, c.pinned ? badge('pinned', 'ok') : null, ` ${fmtBytes(c.resident_bytes)} resident`);
}

function labelsCell(labels) {
  return Object.entries(labels || {}).map(([k, v]) => badge(`${k}=${v}`));
}

function namespaceRow(name, m, error) {
  const open = () => { location.hash = `#/ns/${encodeURIComponent(name)}`; };
  const link = h('td', {}, h('a', { class: 'ns-link', href: `#/ns/${encodeURIComponent(name)}`, text: name }));
  if (!m) return h('tr', { 'data-ns': name }, link, h('td', { colspan: 6, class: 'muted', text: error || 'no metadata' }));
  return h('tr', { class: 'clickable', 'data-ns': name, onclick: open },
    link,
    h('td', { class: 'num', text: fmtNum(m.approx_row_count) }),
    h('td', { class: 'num', text: fmtBytes(m.approx_logical_bytes) }),
    h('td', {}, indexBadge(m.index)),
    h('td', {}, cacheCell(m)),
    h('td', {}, labelsCell(m.labels)),
    h('td', { text: m.lineage ? `${m.lineage.parent} @ v${m.lineage.parent_generation}` : '' }));
}

// ---------- one namespace ----------

const TABS = [['overview', 'Overview'], ['documents', 'Documents'], ['query', 'Query']];

async function viewNamespace(ns, tab) {
  mount(h('h1', { text: ns }), h('p', { class: 'muted', text: 'Loading…' }));
  const meta = await guarded(() => api('GET', `/v1/namespaces/${nsPath(ns)}/metadata`));
  if (!meta) return;
  const schema = schemaAttrs(meta.schema || {});
  const body = h('div', { id: 'tab-body' });
  mount(
    h('div', { class: 'row', id: 'ns-page', 'data-ns': ns },
      h('h1', { text: ns }), indexBadge(meta.index), writeControls(ns)),
    h('div', { class: 'tabs' }, TABS.map(([id, label]) => h('button', {
      type: 'button', 'data-tab': id, class: id === tab ? 'active' : '', text: label,
      onclick: () => { location.hash = `#/ns/${encodeURIComponent(ns)}/${id}`; },
    }))),
    body,
  );
  if (tab === 'documents') return documentsTab(body, ns, schema);
  if (tab === 'query') return queryTab(body, ns, schema);
  return overviewTab(body, ns, meta, schema);
}

function writeControls(ns) {
  if (!canWrite()) return null;
  const compact = () => guarded(async () => {
    const r = await api('POST', `/v1/namespaces/${nsPath(ns)}/_admin/compact`);
    showNote(r.performed ? `Compacted: ${fmtNum(r.rows_written)} rows in ${r.segments_written} segment(s).` : 'Nothing to compact.');
  });
  const del = () => confirmByName('Delete namespace', `Every document of "${ns}" will be deleted.`, ns, async () => {
    await api('DELETE', `/v2/namespaces/${nsPath(ns)}`);
    location.hash = '#/';
  });
  return h('span', { class: 'row' },
    h('button', { type: 'button', class: 'write-control', id: 'compact', text: 'Compact now', onclick: compact }),
    h('button', { type: 'button', class: 'write-control danger', id: 'delete', text: 'Delete…', onclick: del }));
}

// Restore a snapshot file (`GET .../_admin/snapshot`) into a new namespace, named by the user.
function restoreControl(existing) {
  const file = h('input', { type: 'file', hidden: true, class: 'write-control', id: 'restore-file' });
  file.addEventListener('change', () => {
    const f = file.files[0];
    file.value = '';
    if (!f) return;
    const fresh = (v) => /^[A-Za-z0-9_.-]{1,128}$/.test(v) && !existing.includes(v);
    askForName('Restore snapshot', `The snapshot ${f.name} will be restored into a new namespace. Type its name.`, fresh, async (name) => {
      await api('POST', `/v1/namespaces/${nsPath(name)}/_admin/restore`, f);
      location.hash = `#/ns/${encodeURIComponent(name)}`;
    });
  });
  return h('span', { class: 'row' }, file,
    h('button', { type: 'button', class: 'write-control', id: 'restore', text: 'Restore snapshot…', onclick: () => file.click() }));
}

function showNote(text) {
  const note = $('#note') || h('p', { id: 'note', class: 'muted' });
  note.textContent = text;
  $('#tab-body').prepend(note);
}

// The schema as [{name, type, spec}], `id` first.
function schemaAttrs(schema) {
  return Object.entries(schema)
    .map(([name, spec]) => ({ name, spec, type: typeof spec === 'string' ? spec : spec.type }))
    .sort((a, b) => (a.name === 'id' ? -1 : b.name === 'id' ? 1 : a.name.localeCompare(b.name)));
}

const isVector = (a) => /^\[\d+\]f(16|32)$/.test(a.type || '');
const isMultiVector = (a) => /^\[\]\[\d+\]/.test(a.type || '');
const isText = (a) => a.spec && a.spec.full_text_search;
const vectorDims = (a) => Number((a.type.match(/^\[(\d+)\]/) || [])[1]);

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'label', text: label }), h('div', { class: 'value' }, value));
}

async function overviewTab(body, ns, meta, schema) {
  const sync = meta.sync;
  body.append(
    h('div', { class: 'cards', id: 'ns-cards' },
      card('Documents', fmtNum(meta.approx_row_count)),
      card('Logical bytes', fmtBytes(meta.approx_logical_bytes)),
      card('Version', `v${meta.version}`),
      card('Distance', meta.distance_metric || '—'),
      card('Cache', cacheCell(meta)),
      card('Updated', meta.updated_at),
      meta.lineage ? card('Parent branch', `${meta.lineage.parent} @ v${meta.lineage.parent_generation}`) : null,
      meta.labels ? card('Labels', labelsCell(meta.labels)) : null,
      meta.read_only ? card('Mode', badge('read-only', 'warn')) : null,
      sync ? card('Sync', `${sync.mode || ''} · lag ${sync.lag_secs ?? '—'} s`) : null),
    h('h2', { text: 'Schema' }),
    schemaTable(schema),
  );
  const segs = h('div', { id: 'segments' });
  body.append(h('h2', { text: 'Segments and recall' }), segs);
  if (!schema.some(isVector)) {
    segs.append(h('p', { class: 'muted', text: 'No vector attribute: segments carry no calibrated ANN index.' }));
  } else {
    await recallSection(segs, ns, 10);
  }
  body.append(h('h2', { text: 'Metadata' }), h('pre', { id: 'ns-metadata', text: JSON.stringify(meta, null, 2) }));
  markRendered();
}

function schemaTable(schema) {
  const detail = (a) => {
    if (typeof a.spec !== 'object') return '';
    const rest = { ...a.spec };
    delete rest.type;
    return Object.keys(rest).length ? JSON.stringify(rest) : '';
  };
  return h('table', { id: 'schema-table' },
    h('thead', {}, h('tr', {}, ['Attribute', 'Type', 'Options'].map((t) => h('th', { text: t })))),
    h('tbody', {}, schema.map((a) => h('tr', { 'data-attr': a.name },
      h('td', { class: 'mono', text: a.name }), h('td', { class: 'mono', text: a.type }),
      h('td', { class: 'mono wrap', text: detail(a) })))));
}

// Measure recall (`_debug/recall`) and show it per segment against the target.
async function recallSection(el, ns, num) {
  replace(el, h('p', { class: 'muted', text: 'Measuring recall…' }));
  const r = await guarded(() => api('POST', `/v1/namespaces/${nsPath(ns)}/_debug/recall`, { num, top_k: 10 }));
  if (!r) return null;
  const target = (r.segments.find((x) => x.target_recall) || {}).target_recall || 0.95;
  replace(el, 
    h('div', { class: 'cards' },
      card('Measured recall@10', h('span', { id: 'recall-value', text: r.avg_recall.toFixed(3) })),
      card('Target', target.toFixed(2)),
      card('Queries', String(num))),
    recallChart([{ label: 'measured', value: r.avg_recall }, ...r.segments.filter((x) => x.calibrated_recall !== null)
      .map((x) => ({ label: x.segment.slice(0, 8), value: x.calibrated_recall }))], target),
    h('table', { id: 'segments-table' },
      h('thead', {}, h('tr', {}, ['Segment', 'Rows', 'Search', 'Effort', 'Rerank', 'Calibrated recall', 'Target', 'Exact fallback']
        .map((t) => h('th', { text: t })))),
      h('tbody', {}, r.segments.map((x) => h('tr', {},
        h('td', { class: 'mono', text: x.segment }), h('td', { class: 'num', text: fmtNum(x.rows) }),
        h('td', { text: x.path }), h('td', { class: 'num', text: x.effort ?? '—' }),
        h('td', { class: 'num', text: x.rerank ?? '—' }),
        h('td', { class: 'num', text: x.calibrated_recall === null ? '—' : x.calibrated_recall.toFixed(3) }),
        h('td', { class: 'num', text: x.target_recall.toFixed(2) }),
        h('td', { text: x.exact_fallback ? 'yes' : 'no' }))))),
    h('div', { class: 'row' }, h('button', {
      type: 'button', id: 'recall-run', text: 'Measure again (100 queries)', onclick: () => recallSection(el, ns, 100),
    })));
  return r;
}

// Bars of recall in [0, 1] with the target as a dashed line (drawn at its
// natural size: stretching would distort the labels).
function recallChart(items, target) {
  const slot = 110, w = slot * Math.max(items.length, 2) + 140, ht = 130, top = 10, base = 104;
  const y = (v) => base - (base - top) * Math.max(0, Math.min(1, v));
  const bars = items.map((it, i) => [
    s('rect', { class: `bar ${it.value < target ? 'low' : ''}`, x: 50 + slot * i + 20, y: y(it.value), width: 50, height: Math.max(1, base - y(it.value)) }),
    s('text', { x: 50 + slot * i + 4, y: 118, text: it.label.length > 16 ? `${it.label.slice(0, 15)}…` : it.label }),
    s('text', { x: 50 + slot * i + 26, y: y(it.value) - 3, text: it.value.toFixed(3) }),
  ]);
  const axis = [0, 0.5, 1].map((v) => s('text', { x: 4, y: y(v) + 3, text: v.toFixed(1) }));
  return h('div', { class: 'chart' }, s('svg', { id: 'recall-chart', class: 'fixed', width: w, height: ht, viewBox: `0 0 ${w} ${ht}` },
    axis, s('line', { class: 'axis', x1: 30, x2: w, y1: base, y2: base }), bars,
    s('line', { class: 'target', x1: 30, x2: w, y1: y(target), y2: y(target) }),
    s('text', { class: 'target-label', x: w - 80, y: y(target) - 3, text: `target ${target.toFixed(2)}` })));
}

// ---------- filter builder ----------

const OPS = ['Eq', 'NotEq', 'Lt', 'Lte', 'Gt', 'Gte', 'In', 'NotIn', 'Contains', 'Glob', 'IGlob'];

// A builder of AND/OR clauses; `onchange(filterOrNull)` on every edit.
function filterBuilder(schema, onchange) {
  const attrs = schema.filter((a) => !isVector(a) && !isMultiVector(a)).map((a) => a.name);
  const list = h('div', { class: 'clauses' });
  const combine = h('select', { class: 'combine' }, h('option', { text: 'And' }), h('option', { text: 'Or' }));
  const out = h('pre', { id: 'filter-json', text: 'no filter' });
  const typeOf = Object.fromEntries(schema.map((a) => [a.name, a.type]));
  // A value as the attribute's type reads it: numbers for numeric types, true/false for
  // bool, text as typed for strings (JSON only for an explicit array or quoted string).
  const value = (attr, raw) => {
    const t = typeOf[attr] || '';
    const text = raw.trim();
    if (text.startsWith('[') || text.startsWith('"')) {
      try { return JSON.parse(text); } catch (_) { /* typed as text */ }
    }
    if (/^(u?int|float|f32|f64)/.test(t) && text !== '' && !Number.isNaN(Number(text))) return Number(text);
    if (t === 'bool' && (text === 'true' || text === 'false')) return text === 'true';
    if (t === '' || t === 'id') {
      try { return JSON.parse(text); } catch (_) { /* text */ }
    }
    return raw;
  };
  const build = () => {
    const clauses = [...list.querySelectorAll('.clause')].map((c) => {
      const attr = c.querySelector('select.attr').value;
      const op = c.querySelector('select.op').value;
      let v = value(attr, c.querySelector('input.value').value);
      if ((op === 'In' || op === 'NotIn') && !Array.isArray(v)) v = String(v).split(',').map((x) => value(attr, x.trim()));
      return [attr, op, v];
    });
    const f = clauses.length === 0 ? null : clauses.length === 1 ? clauses[0] : [combine.value, clauses];
    out.textContent = f ? JSON.stringify(f) : 'no filter';
    onchange(f);
  };
  const add = () => {
    const clause = h('div', { class: 'clause' },
      h('select', { class: 'attr' }, attrs.map((a) => h('option', { text: a }))),
      h('select', { class: 'op' }, OPS.map((o) => h('option', { text: o }))),
      h('input', { class: 'value', placeholder: 'value (JSON or text)', size: 24 }),
      h('button', { type: 'button', class: 'remove', text: '×', onclick: () => { clause.remove(); build(); } }));
    clause.addEventListener('input', build);
    clause.addEventListener('change', build);
    list.append(clause);
    build();
  };
  combine.addEventListener('change', build);
  return h('div', { id: 'filter-builder' },
    h('div', { class: 'row' }, h('strong', { text: 'Filters' }), combine,
      h('button', { type: 'button', class: 'add-clause', text: '+ condition', onclick: add })),
    list, out);
}

// ---------- documents ----------

function documentsTab(body, ns, schema) {
  const PAGE = 25;
  let filter = null;
  let pages = [null]; // the last id of each page before it
  const table = h('div', { id: 'docs' });
  const detail = h('pre', { id: 'doc-detail', text: 'Click a row to see the whole document.' });
  const load = (pageIndex) => guarded(async () => {
    const after = pages[pageIndex];
    const conds = [filter, after === null ? null : ['id', 'Gt', after]].filter(Boolean);
    const req = { rank_by: ['id', 'asc'], top_k: PAGE, include_attributes: true };
    if (conds.length) req.filters = conds.length === 1 ? conds[0] : ['And', conds];
    const r = await api('POST', `/v2/namespaces/${nsPath(ns)}/query`, req);
    const rows = r.rows || [];
    if (rows.length === PAGE) pages[pageIndex + 1] = rows[rows.length - 1].id;
    else pages = pages.slice(0, pageIndex + 1);
    replace(table, rowsTable('docs-table', rows, (row) => { detail.textContent = prettyJson(shortVectors(row)); }),
      h('div', { class: 'row' },
        h('button', { type: 'button', id: 'docs-prev', text: '← Previous', disabled: pageIndex === 0, onclick: () => load(pageIndex - 1) }),
        h('span', { class: 'muted', text: `page ${pageIndex + 1} · ${rows.length} rows` }),
        h('button', { type: 'button', id: 'docs-next', text: 'Next →', disabled: pages.length <= pageIndex + 1, onclick: () => load(pageIndex + 1) })));
  });
  const builder = filterBuilder(schema, (f) => { filter = f; });
  body.append(builder,
    h('div', { class: 'row' }, h('button', {
      type: 'button', class: 'primary', id: 'docs-apply', text: 'Apply',
      onclick: () => { pages = [null]; load(0); },
    })),
    h('div', { class: 'cols' }, table, detail));
  return load(0);
}

// A table of result rows: id, $dist, then the other attributes (vectors shortened).
function rowsTable(id, rows, onpick) {
  const cols = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  cols.sort((a, b) => (a === 'id' ? -1 : b === 'id' ? 1 : a === '$dist' ? -1 : b === '$dist' ? 1 : 0));
  return h('table', { id },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { text: c })))),
    h('tbody', {}, rows.map((r) => {
      const tr = h('tr', { class: onpick ? 'clickable' : '', 'data-id': JSON.stringify(r.id) },
        cols.map((c) => h('td', { class: typeof r[c] === 'number' ? 'num mono' : 'mono wrap', text: r[c] === undefined ? '' : shorten(r[c]) })));
      if (onpick) {
        tr.addEventListener('click', () => {
          tr.parentElement.querySelectorAll('tr').forEach((x) => x.classList.remove('selected'));
          tr.classList.add('selected');
          onpick(r);
        });
      }
      return tr;
    })));
}

// ---------- query playground ----------

function queryTab(body, ns, schema) {
  const vectors = schema.filter(isVector);
  const texts = schema.filter(isText);
  const models = (ui.who.models || []).filter((m) => m.kind === 'embedding');
  const modes = [
    vectors.length && ['ann', 'ANN (vector)'],
    vectors.length && models.length && ['embed', 'ANN (text, local model)'],
    texts.length && ['bm25', 'BM25 (full text)'],
    vectors.length && texts.length && ['hybrid', 'Hybrid (ANN + BM25, RRF)'],
    ['order', 'Order by attribute'],
    ['aggregate', 'Aggregate'],
  ].filter(Boolean);
  const el = {
    mode: h('select', { id: 'q-mode' }, modes.map(([v, t]) => h('option', { value: v, text: t }))),
    vattr: h('select', { id: 'q-vector-attr' }, vectors.map((a) => h('option', { text: a.name }))),
    vector: h('textarea', { id: 'q-vector', rows: 3, placeholder: '[0.1, 0.2, …] (JSON array of numbers)' }),
    tattr: h('select', { id: 'q-text-attr' }, texts.map((a) => h('option', { text: a.name }))),
    text: h('input', { id: 'q-text', size: 50, placeholder: 'query text' }),
    order: h('select', { id: 'q-order-attr' }, schema.filter((a) => !isVector(a) && !isMultiVector(a)).map((a) => h('option', { text: a.name }))),
    dir: h('select', { id: 'q-order-dir' }, h('option', { text: 'asc' }), h('option', { text: 'desc' })),
    groupBy: h('select', { id: 'q-group-by' }, h('option', { value: '', text: '(no grouping)' }),
      schema.filter((a) => !isVector(a) && !isMultiVector(a) && a.name !== 'id').map((a) => h('option', { text: a.name }))),
    topk: h('input', { id: 'q-topk', type: 'number', min: 1, max: 1200, value: 10, size: 5 }),
  };
  let filter = null;
  const builder = filterBuilder(schema, (f) => { filter = f; });
  const out = h('div', { id: 'q-out', 'data-run': 0 });
  const fields = h('div', { id: 'q-fields' });
  const layout = () => {
    const m = el.mode.value;
    const row = (label, ...kids) => h('div', { class: 'row' }, h('label', { text: label }), ...kids);
    replace(fields, 
      (m === 'ann' || m === 'hybrid') ? row('Vector attribute', el.vattr) : null,
      (m === 'ann' || m === 'hybrid') ? el.vector : null,
      m === 'embed' ? row('Vector attribute', el.vattr) : null,
      (m === 'bm25' || m === 'hybrid') ? row('Text attribute', el.tattr) : null,
      (m === 'bm25' || m === 'hybrid' || m === 'embed') ? row('Text', el.text) : null,
      m === 'order' ? row('Order by', el.order, el.dir) : null,
      m === 'aggregate' ? row('Count, grouped by', el.groupBy) : null,
      m !== 'aggregate' ? row('top_k', el.topk) : null);
  };
  el.mode.addEventListener('change', layout);
  layout();
  const request = () => buildRequest(el, filter, vectors);
  const run = () => guarded(async () => {
    const t0 = performance.now();
    const req = request();
    const r = await api('POST', `/v2/namespaces/${nsPath(ns)}/query`, req);
    showResults(out, ns, req, r, performance.now() - t0);
    out.dataset.ms = (performance.now() - t0).toFixed(1);
  });
  const explain = () => guarded(async () => {
    const req = request();
    delete req.rerank_by;
    const target = req.queries ? req.queries[0] : req;
    const r = await api('POST', `/v2/namespaces/${nsPath(ns)}/explain_query`, target);
    replace(out, h('h3', { text: 'Plan' }), h('pre', { id: 'q-explain-out', text: r.plan_text || JSON.stringify(r, null, 2) }));
  });
  body.append(
    h('div', { class: 'row' }, h('label', { text: 'Query' }), el.mode),
    fields, builder,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', id: 'q-run', text: 'Run', onclick: run }),
      h('button', { type: 'button', id: 'q-explain', text: 'Explain', onclick: explain })),
    out);
}

function parseVector(text) {
  let v;
  try { v = JSON.parse(text); } catch (_) { throw new Error('the vector must be a JSON array of numbers, e.g. [0.1, 0.2]'); }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new Error('the vector must be a JSON array of numbers');
  return v;
}

function buildRequest(el, filter, vectors) {
  const m = el.mode.value;
  const topk = Number(el.topk.value) || 10;
  const base = (rank) => {
    const q = { rank_by: rank, top_k: topk, include_attributes: true };
    if (filter) q.filters = filter;
    return q;
  };
  const ann = () => {
    const attr = el.vattr.value || (vectors[0] && vectors[0].name);
    return [attr, 'ANN', parseVector(el.vector.value)];
  };
  const bm25 = () => [el.tattr.value, 'BM25', el.text.value];
  switch (m) {
    case 'ann': return base(ann());
    case 'embed': return base([el.vattr.value, 'ANN', ['Embed', el.text.value]]);
    case 'bm25': return base(bm25());
    case 'hybrid': return { queries: [base(ann()), base(bm25())], rerank_by: ['RRF', {}] };
    case 'order': return base([el.order.value, el.dir.value]);
    default: {
      const q = { aggregate_by: { count: ['Count'] } };
      if (el.groupBy.value) q.group_by = [el.groupBy.value];
      if (filter) q.filters = filter;
      return q;
    }
  }
}

function showResults(out, ns, req, r, ms) {
  out.setAttribute('data-run', Number(out.getAttribute('data-run') || 0) + 1);
  const rows = r.rows || (r.results && r.results[0] && r.results[0].rows);
  const agg = r.aggregation_groups || r.aggregations;
  replace(out, 
    h('h3', { text: `Results · ${ms.toFixed(1)} ms in the browser` }),
    rows ? rowsTable('q-results', rows) : null,
    agg ? h('pre', { id: 'q-aggregations', text: JSON.stringify(agg, null, 2) }) : null,
    h('div', { class: 'cols' },
      h('div', {}, h('h3', { text: 'performance' }), h('pre', { id: 'q-performance', text: JSON.stringify(r.performance, null, 2) })),
      h('div', {}, h('h3', { text: 'request' }), h('pre', { id: 'q-request', text: prettyJson(req) }))),
    h('h3', { text: 'As code' }),
    codeBlock('curl', 'q-code-curl', curlCode(ns, req)),
    codeBlock('Python (turbopuffer SDK)', 'q-code-python', pythonCode(ns, req)),
    codeBlock('TypeScript (@turbopuffer/turbopuffer)', 'q-code-ts', tsCode(ns, req)));
}

function codeBlock(title, id, code) {
  const pre = h('pre', { id, text: code });
  const copy = () => navigator.clipboard.writeText(code).catch(() => {});
  return h('div', {}, h('div', { class: 'row' }, h('strong', { text: title }),
    h('button', { type: 'button', text: 'Copy', onclick: copy })), pre);
}

const shellQuote = (text) => `'${text.replace(/'/g, "'\\''")}'`;

function curlCode(ns, req) {
  const auth = ui.who.auth === 'open' ? '' : ' \\\n  -H "Authorization: Bearer $TIDEPOOL_API_KEY"';
  return `curl -s ${location.origin}/v2/namespaces/${nsPath(ns)}/query${auth} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(req))}`;
}

// JSON laid out for reading: objects one key per line, arrays on one line
// when short or flat (a vector stays one line).
function prettyJson(v, indent = '', scalar = JSON.stringify) {
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    const flat = v.every((x) => x === null || typeof x !== 'object');
    const one = `[${v.map((x) => prettyJson(x, inner, scalar)).join(', ')}]`;
    if (flat || one.length <= 80) return one;
    return `[\n${v.map((x) => inner + prettyJson(x, inner, scalar)).join(',\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object') {
    const body = Object.entries(v).map(([k, x]) => `${inner}${JSON.stringify(k)}: ${prettyJson(x, inner, scalar)}`);
    return body.length ? `{\n${body.join(',\n')}\n${indent}}` : '{}';
  }
  return scalar(v);
}

// JSON as a Python literal (true/false/null → True/False/None).
function pyLiteral(v, indent = '') {
  const scalar = (x) => (x === null ? 'None' : x === true ? 'True' : x === false ? 'False' : JSON.stringify(x));
  return prettyJson(v, indent, scalar);
}

function pythonCode(ns, req) {
  const key = ui.who.auth === 'open' ? '"local-dev"' : 'os.environ["TIDEPOOL_API_KEY"]';
  const args = Object.entries(req).map(([k, v]) => `    ${k}=${pyLiteral(v, '    ')},`).join('\n');
  const call = req.queries ? 'multi_query' : 'query';
  return `import os\nimport turbopuffer\n\nclient = turbopuffer.Turbopuffer(api_key=${key}, base_url="${location.origin}")\nns = client.namespace(${JSON.stringify(ns)})\nresult = ns.${call}(\n${args}\n)\nprint(result)`;
}

function tsCode(ns, req) {
  const key = ui.who.auth === 'open' ? '"local-dev"' : 'process.env.TIDEPOOL_API_KEY';
  const call = req.queries ? 'multiQuery' : 'query';
  return `import Turbopuffer from "@turbopuffer/turbopuffer";\n\nconst client = new Turbopuffer({ apiKey: ${key}, baseURL: "${location.origin}" });\nconst ns = client.namespace(${JSON.stringify(ns)});\nconst result = await ns.${call}(${prettyJson(req)});\nconsole.log(JSON.stringify(result, null, 2));`;
}

// ---------- health ----------

// Prometheus text → {name{labels}: value}.
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function sumWhere(m, prefix) {
  let total = 0;
  for (const [k, v] of m) if (k.startsWith(prefix)) total += v;
  return total;
}

// One sample: cumulative request count and request seconds, and RSS.
function sample(text) {
  const m = parseMetrics(text);
  const rss = m.get('tidepool_process_resident_memory_bytes') ?? m.get('process_resident_memory_bytes') ?? 0;
  return {
    at: performance.now(),
    requests: sumWhere(m, 'tidepool_http_requests_total'),
    seconds: sumWhere(m, 'tidepool_http_request_duration_seconds_sum'),
    count: sumWhere(m, 'tidepool_http_request_duration_seconds_count'),
    rss,
  };
}

function chart(id, title, unit) {
  const svgEl = s('svg', { id, viewBox: '0 0 300 90', preserveAspectRatio: 'none', 'data-points': 0 });
  const now = h('span', { class: 'now', text: '—' });
  const box = h('div', { class: 'chart' }, h('div', { class: 'row' }, h('span', { text: title }), now), svgEl);
  const points = [];
  box.push = (v) => {
    points.push(v);
    if (points.length > CHART_POINTS) points.shift();
    const max = Math.max(...points, 1e-9);
    const x = (i) => (300 * i) / (CHART_POINTS - 1);
    const y = (p) => 86 - (80 * p) / max;
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(p).toFixed(1)}`).join(' ');
    replace(svgEl, s('path', { class: 'line', d }), s('text', { x: 2, y: 10, text: `max ${max.toFixed(2)} ${unit}` }));
    svgEl.setAttribute('data-points', points.length);
    now.textContent = `${v.toFixed(2)} ${unit}`;
  };
  return box;
}

function viewHealth() {
  const rate = chart('chart-rate', 'Requests', 'req/s');
  const latency = chart('chart-latency', 'Mean latency', 'ms');
  const memory = chart('chart-memory', 'Memory (RSS)', 'MiB');
  const recall = h('div', { id: 'recall-all' });
  const sync = h('div', { id: 'sync' });
  mount(h('h1', { text: 'Health' }),
    h('div', { class: 'charts' }, rate, latency, memory),
    h('p', { class: 'muted', text: `From /metrics every ${POLL_MS / 1000} s while this page is open.` }),
    h('h2', { text: 'Recall per namespace' }), recall,
    ui.who.sync ? [h('h2', { text: 'Sync' }), sync] : null);
  let last = null;
  const tick = () => guarded(async () => {
    const cur = sample(await api('GET', '/metrics', undefined, { text: true }));
    if (last) {
      const dt = (cur.at - last.at) / 1000;
      const dn = cur.count - last.count;
      rate.push(Math.max(0, (cur.requests - last.requests) / dt));
      latency.push(dn > 0 ? (1000 * (cur.seconds - last.seconds)) / dn : 0);
    }
    memory.push(cur.rss / (1024 * 1024));
    last = cur;
  });
  tick();
  ui.timers.push(setInterval(tick, POLL_MS));
  recallAll(recall);
  if (ui.who.sync) {
    syncStatus(sync);
    ui.timers.push(setInterval(() => syncStatus(sync), POLL_MS * 2.5));
  }
}

// Recall of every namespace that has a vector attribute, against its target.
function recallAll(el) {
  const run = () => guarded(async () => {
    replace(el, h('p', { class: 'muted', text: 'Measuring…' }));
    const entries = await listAll();
    const vectorNs = entries.filter((e) => e.metadata && schemaAttrs(e.metadata.schema || {}).some(isVector)).map((e) => e.id);
    const results = await pooled(vectorNs, 2, (n) => api('POST', `/v1/namespaces/${nsPath(n)}/_debug/recall`, { num: 20, top_k: 10 }));
    const target = results.flatMap((r) => r.segments).map((x) => x.target_recall).find(Boolean) || 0.95;
    replace(el, 
      recallChart(vectorNs.map((n, i) => ({ label: n, value: results[i].avg_recall })), target),
      h('table', { id: 'recall-table' },
        h('thead', {}, h('tr', {}, ['Namespace', 'Recall@10', 'Target', 'Segments'].map((t) => h('th', { text: t })))),
        h('tbody', {}, vectorNs.map((n, i) => h('tr', { 'data-ns': n },
          h('td', {}, h('a', { href: `#/ns/${encodeURIComponent(n)}`, text: n })),
          h('td', { class: 'num', text: results[i].avg_recall.toFixed(3) }),
          h('td', { class: 'num', text: target.toFixed(2) }),
          h('td', { class: 'num', text: results[i].segments.length }))))),
      h('div', { class: 'row' }, h('button', { type: 'button', id: 'recall-run', text: 'Measure again', onclick: run })));
  });
  replace(el, h('div', { class: 'row' },
    h('button', { type: 'button', id: 'recall-run', text: 'Measure recall (20 queries per namespace)', onclick: run })));
}

async function syncStatus(el) {
  const st = await guarded(() => api('GET', '/v1/sync/status'));
  if (!st) return;
  const remote = st.remote || {};
  replace(el, 
    h('p', {}, `Remote ${remote.url} · `, remote.reachable === false ? badge('unreachable', 'bad') : badge('reachable', 'ok'),
      ` · last contact ${remote.last_contact ? new Date(remote.last_contact).toISOString() : 'never'} · node ${st.node_id}`),
    h('table', { id: 'sync-table' },
      h('thead', {}, h('tr', {}, ['Namespace', 'Mode', 'Local / remote version', 'Lag', 'Pending', 'Conflicts', 'Last error']
        .map((t) => h('th', { text: t })))),
      h('tbody', {}, st.namespaces.map((n) => h('tr', { 'data-ns': n.namespace },
        h('td', { text: n.namespace }), h('td', { text: `${n.mode} (${n.on_conflict})` }),
        h('td', { text: `v${n.local_generation} / v${n.remote_generation ?? '—'}` }),
        h('td', { class: 'num', text: n.lag_secs === null ? '—' : `${n.lag_secs} s` }),
        h('td', { class: 'num', text: `${n.pending_objects} objects, ${fmtBytes(n.pending_bytes)}` }),
        h('td', { class: 'num', text: n.conflicts.length }),
        h('td', { text: n.last_error || '' }))))));
}

// ---------- start ----------

async function start() {
  setupKeyDialog();
  window.addEventListener('hashchange', () => render());
  await guarded(loadWho);
  if (ui.who && ui.who.authenticated === false) $('#key-dialog').showModal();
  await render();
}

document.addEventListener('DOMContentLoaded', start);
