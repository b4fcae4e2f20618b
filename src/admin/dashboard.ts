/**
 * The dashboard page served at / on the admin port: one self-contained page (inline CSS and
 * vanilla JS, no external resources) that polls /tenants every second and shows the tenants
 * table (busiest by tps first), throughput and latency charts over the last minute, and the pools.
 *
 * Tenant and pool names come from clients, so the script never writes markup from data: every
 * value goes in through textContent, setAttribute or dataset. Test hooks: `#updated` (with
 * `data-time`), `#status`, `tr[data-tenant]` / `tr[data-pool]` with `td[data-col]` cells whose
 * `data-value` holds the raw number, `#tps-chart` / `#latency-chart` with `polyline[data-series]`.
 * The script sits in a template literal: it uses no backticks, no dollar-brace and no backslashes.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>pgtenant dashboard</title>
<style>
  :root { --bg: #f6f7f9; --card: #fff; --fg: #1f2933; --muted: #6b7785; --line: #e3e6ea; --bad: #c62828; --ok: #2e7d32; }
  @media (prefers-color-scheme: dark) { :root { --bg: #14171a; --card: #1d2126; --fg: #e4e7eb; --muted: #93a1b0; --line: #2e343b; } }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 20px 24px; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; margin-bottom: 16px; }
  h1 { font-size: 20px; margin: 0; } h2 { font-size: 15px; margin: 0 0 10px; }
  .muted { color: var(--muted); }
  #status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--line); }
  #status.live { background: #e3f4e5; color: var(--ok); } #status.down { background: #fde7e7; color: var(--bad); }
  #summary { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
  #summary div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 120px; }
  #summary b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; overflow-x: auto; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
  .charts .card { margin-bottom: 0; } .charts { margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
  th { font-size: 12px; font-weight: 600; color: var(--muted); }
  th:first-child, td:first-child, td[data-col=placement], th.l { text-align: left; }
  tbody tr:hover { background: var(--bg); }
  td.bad { color: var(--bad); font-weight: 600; }
  .none { font-style: italic; color: var(--muted); }
  .tag { font-size: 12px; padding: 1px 6px; border-radius: 4px; background: var(--line); }
  svg { width: 100%; height: auto; display: block; }
  svg .grid { stroke: var(--line); stroke-width: 1; } svg text { fill: var(--muted); font-size: 11px; }
  svg polyline { fill: none; stroke-width: 2; stroke-linejoin: round; }
  .legend { list-style: none; padding: 0; margin: 8px 0 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; }
  .legend i { display: inline-block; width: 14px; height: 0; border-top: 3px solid; margin-right: 5px; vertical-align: middle; }
  .legend i.dashed { border-top-style: dashed; }
  .bar { display: flex; width: 160px; height: 10px; border-radius: 3px; overflow: hidden; background: var(--line); }
  .bar .a { background: #2563eb; } .bar .i { background: #93c5fd; }
</style>
</head>
<body>
<header><h1>pgtenant</h1><span id="status">connecting</span><span class="muted">updated <span id="updated">never</span></span></header>
<div id="summary">
  <div><span class="muted">tenants</span><b id="sum-tenants">0</b></div>
  <div><span class="muted">clients</span><b id="sum-clients">0</b></div>
  <div><span class="muted">transactions/s</span><b id="sum-tps">0</b></div>
  <div><span class="muted">transactions</span><b id="sum-transactions">0</b></div>
</div>
<div class="charts">
  <section class="card"><h2>Throughput <span class="muted">(tps, top 5 tenants)</span></h2><svg id="tps-chart" viewBox="0 0 640 180" role="img" aria-label="transactions per second per tenant"></svg><ul class="legend" id="tps-legend"></ul></section>
  <section class="card"><h2>Latency <span class="muted">(p99 ms, top 5 tenants; dashed: backends)</span></h2><svg id="latency-chart" viewBox="0 0 640 180" role="img" aria-label="p99 transaction latency"></svg><ul class="legend" id="latency-legend"></ul></section>
</div>
<section class="card"><h2>Tenants</h2><table id="tenants"><thead><tr><th>tenant</th><th class="l">placement</th><th>clients</th><th>tps</th><th>transactions</th><th>p50 ms</th><th>p99 ms</th><th>errors</th><th>blocked</th><th>rows</th><th>busy s</th></tr></thead><tbody></tbody></table></section>
<section class="card"><h2>Pools</h2><table id="pools"><thead><tr><th>pool</th><th>size</th><th>active</th><th>idle</th><th>waiting</th><th class="l">in use</th></tr></thead><tbody></tbody></table></section>
<script>
'use strict';
const SAMPLES = 60, TOP = 5, POLL_MS = 1000, SVGNS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#9333ea', '#0d9488'];
const colors = new Map();
const colorOf = (key) => { if (!colors.has(key)) colors.set(key, PALETTE[colors.size % PALETTE.length]); return colors.get(key); };
const history = []; // one entry per poll: { tenants: Map tenant -> row, backends: Map backend -> row }
const $ = (id) => document.getElementById(id);
const num = (v) => (typeof v === 'number' && isFinite(v) ? v : 0);
const fmt = {
  int: (v) => Math.round(v).toLocaleString('en-US'),
  rate: (v) => v.toFixed(1),
  ms: (v) => v.toFixed(v < 10 ? 2 : 1),
  sec: (v) => v.toFixed(2),
};
const TENANT_COLS = [['clients', 'int'], ['tps', 'rate'], ['transactions', 'int'], ['p50Ms', 'ms'], ['p99Ms', 'ms'], ['errors', 'int'], ['blocked', 'int'], ['rows', 'int'], ['busySeconds', 'sec']];
const POOL_COLS = [['size', 'int'], ['active', 'int'], ['idle', 'int'], ['waiting', 'int']];
const label = (tenant) => (tenant === '-' ? '(no tenant)' : String(tenant));
const byTps = (a, b) => num(b.tps) - num(a.tps) || num(b.transactions) - num(a.transactions) || String(a.tenant).localeCompare(String(b.tenant));

function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  return e;
}

/** The row of key in tbody (created with one cell per column on first sight), in the given position. */
function rowFor(tbody, attr, key, cols, position) {
  let tr = null;
  for (const r of tbody.rows) if (r.getAttribute(attr) === key) tr = r;
  if (tr === null) {
    tr = document.createElement('tr');
    tr.setAttribute(attr, key);
    for (const c of cols) { const td = document.createElement('td'); td.dataset.col = c; tr.appendChild(td); }
  }
  if (tbody.rows[position] !== tr) tbody.insertBefore(tr, tbody.rows[position] || null);
  return tr;
}

function setCell(tr, col, value, kind) {
  const td = tr.querySelector('td[data-col="' + col + '"]');
  const v = num(value);
  td.dataset.value = String(v);
  td.textContent = fmt[kind](v);
  if (col === 'errors' || col === 'blocked' || col === 'waiting') td.classList.toggle('bad', v > 0);
}

function prune(tbody, attr, keep) {
  for (const r of Array.from(tbody.rows)) if (!keep.has(r.getAttribute(attr))) r.remove();
}

function renderTenants(tenants) {
  const tbody = $('tenants').tBodies[0];
  tenants.forEach((t, i) => {
    const key = String(t.tenant);
    const tr = rowFor(tbody, 'data-tenant', key, ['tenant', 'placement'].concat(TENANT_COLS.map((c) => c[0])), i);
    const name = tr.cells[0];
    name.dataset.value = key;
    name.textContent = label(key);
    name.className = key === '-' ? 'none' : '';
    if (key === '-') name.title = 'clients without a tenant';
    const place = tr.cells[1];
    place.dataset.value = String(t.placement || '');
    place.replaceChildren();
    if (t.placement) { const tag = document.createElement('span'); tag.className = 'tag'; tag.textContent = String(t.placement); place.appendChild(tag); }
    for (const [col, kind] of TENANT_COLS) setCell(tr, col, t[col], kind);
  });
  prune(tbody, 'data-tenant', new Set(tenants.map((t) => String(t.tenant))));
}

function renderPools(pools) {
  const tbody = $('pools').tBodies[0];
  pools.forEach((p, i) => {
    const key = String(p.pool);
    const tr = rowFor(tbody, 'data-pool', key, ['pool'].concat(POOL_COLS.map((c) => c[0]), ['bar']), i);
    tr.cells[0].textContent = key;
    for (const [col, kind] of POOL_COLS) setCell(tr, col, p[col], kind);
    const size = Math.max(num(p.size), 1), bar = document.createElement('div'), a = document.createElement('span'), d = document.createElement('span');
    bar.className = 'bar'; a.className = 'a'; d.className = 'i';
    a.style.width = Math.min(100, (100 * num(p.active)) / size) + '%';
    d.style.width = Math.min(100, (100 * num(p.idle)) / size) + '%';
    bar.title = num(p.active) + ' active, ' + num(p.idle) + ' idle of ' + num(p.size) + (num(p.waiting) > 0 ? ', ' + num(p.waiting) + ' waiting' : '');
    bar.append(a, d);
    tr.cells[tr.cells.length - 1].replaceChildren(bar);
  });
  prune(tbody, 'data-pool', new Set(pools.map((p) => String(p.pool))));
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** series: [{ key, name, color, dashed, values }] with values aligned to history (null = no sample). */
function drawChart(el, legend, series, unit, format) {
  const W = 640, H = 180, L = 46, R = 10, T = 8, B = 8;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null) max = Math.max(max, v);
  max = niceMax(max);
  el.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const y = T + ((H - T - B) * i) / 4;
    el.appendChild(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }));
    const text = svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' });
    const v = max * (1 - i / 4);
    text.textContent = v >= 1000 ? +(v / 1000).toFixed(1) + 'k' : String(+v.toFixed(2));
    el.appendChild(text);
  }
  const x = (i, n) => L + ((W - L - R) * (SAMPLES - n + i)) / (SAMPLES - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  legend.replaceChildren();
  for (const s of series) {
    const points = [];
    s.values.forEach((v, i) => { if (v !== null) points.push(x(i, s.values.length).toFixed(1) + ',' + y(v).toFixed(1)); });
    const line = svg('polyline', { points: points.join(' '), stroke: s.color, 'data-series': s.key });
    if (s.dashed) line.setAttribute('stroke-dasharray', '5 4');
    el.appendChild(line);
    const li = document.createElement('li'), sw = document.createElement('i'), last = s.values[s.values.length - 1];
    li.dataset.series = s.key;
    sw.style.borderColor = s.color;
    if (s.dashed) sw.className = 'dashed';
    li.append(sw, document.createTextNode(s.name + ' ' + (last === null ? '-' : format(last)) + ' ' + unit));
    legend.appendChild(li);
  }
  if (series.length === 0) {
    const text = svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' });
    text.textContent = 'no traffic yet';
    el.appendChild(text);
  }
}

function renderCharts(top) {
  const values = (pick) => history.map(pick);
  const tenantSeries = (field) => top.map((t) => ({ key: t, name: label(t), color: colorOf('t:' + t), values: values((h) => (h.tenants.has(t) ? num(h.tenants.get(t)[field]) : null)) }));
  drawChart($('tps-chart'), $('tps-legend'), tenantSeries('tps'), 'tps', fmt.rate);
  const backends = new Set();
  for (const h of history) for (const b of h.backends.keys()) backends.add(b);
  const backendSeries = Array.from(backends).sort().map((b) => ({ key: 'backend:' + b, name: 'backend ' + b, color: colorOf('b:' + b), dashed: true, values: values((h) => (h.backends.has(b) ? num(h.backends.get(b).p99Ms) : null)) }));
  drawChart($('latency-chart'), $('latency-legend'), tenantSeries('p99Ms').concat(backendSeries), 'ms', fmt.ms);
}

function render(report) {
  const tenants = (Array.isArray(report.tenants) ? report.tenants : []).slice().sort(byTps);
  history.push({ tenants: new Map(tenants.map((t) => [String(t.tenant), t])), backends: new Map((report.backends || []).map((b) => [String(b.backend), b])) });
  if (history.length > SAMPLES) history.shift();
  renderTenants(tenants);
  renderPools(Array.isArray(report.pools) ? report.pools : []);
  renderCharts(tenants.slice(0, TOP).map((t) => String(t.tenant)));
  const sum = (f) => tenants.reduce((acc, t) => acc + num(t[f]), 0);
  $('sum-tenants').textContent = String(tenants.filter((t) => t.tenant !== '-').length);
  $('sum-clients').textContent = fmt.int(sum('clients'));
  $('sum-tps').textContent = fmt.rate(sum('tps'));
  $('sum-transactions').textContent = fmt.int(sum('transactions'));
  const when = new Date(report.time);
  $('updated').textContent = isNaN(when.getTime()) ? String(report.time) : when.toLocaleTimeString();
  $('updated').dataset.time = String(report.time);
}

function status(text, cls) {
  const s = $('status');
  s.textContent = text;
  s.className = cls;
}

async function poll() {
  try {
    const res = await fetch('tenants', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
    status('live', 'live');
  } catch (err) {
    status('offline: ' + (err && err.message ? err.message : String(err)), 'down');
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
</script>
</body>
</html>
`;
