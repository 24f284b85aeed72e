// The live fleet page: polls `data` (same folder, same credentials) and draws with uPlot.
// Every figure from the fleet is written with textContent, never as markup.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const charts = {};
  const sparks = new Map();

  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  function fmt(n, digits) {
    return typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '–';
  }

  function lineChart(node, series, height) {
    const opts = {
      width: 360,
      height: height,
      legend: { show: series.length > 1 },
      series: [{}].concat(
        series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false } })),
      ),
      axes: [{ size: 30 }, { size: 40 }],
      scales: { x: { time: true } },
    };
    return new uPlot(opts, [[]].concat(series.map(() => [])), node);
  }

  function sparkline(color) {
    const node = el('span', undefined, 'spark');
    const plot = new uPlot(
      {
        width: 110,
        height: 26,
        legend: { show: false },
        cursor: { show: false },
        select: { show: false },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: false }, y: { range: [0, 100] } },
        series: [{}, { stroke: color, width: 1, fill: color + '22', points: { show: false } }],
      },
      [[], []],
      node,
    );
    return { node, plot };
  }

  const PALETTE = ['#2e6fd8', '#d8742e', '#2ea36b', '#9b2ed8', '#d82e5b', '#6b7380'];

  function renderTiles(view) {
    const running = view.workers.filter((w) => w.state === 'running').length;
    $('t-workers').textContent = view.workers.length + ' (' + running + ' running)';
    const last = view.samples[view.samples.length - 1] || {};
    $('t-throughput').textContent = fmt(last.throughput, 1) + ' jobs/s';
    const p95s = view.samples.filter((s) => typeof s.p95 === 'number');
    const p95 = p95s.length ? p95s[p95s.length - 1].p95 : undefined;
    $('t-p95').textContent = p95 === undefined ? '–' : fmt(p95 * 1000, 0) + ' ms';
    const parts = Object.keys(view.caches).map((name) => {
      const c = view.caches[name];
      return name + ' ' + (c.ratio === null ? '–' : fmt(c.ratio * 100, 0) + '%');
    });
    $('t-caches').textContent = parts.length ? parts.join(' · ') : 'no caches';
  }

  function renderCharts(view) {
    const xs = view.samples.map((s) => s.at / 1000);
    charts.throughput ??= lineChart($('c-throughput'), [{ label: 'jobs/s', color: PALETTE[0] }], 150);
    charts.throughput.setData([
      xs,
      view.samples.map((s) => (typeof s.throughput === 'number' ? s.throughput : null)),
    ]);
    charts.p95 ??= lineChart($('c-p95'), [{ label: 'p95 ms', color: PALETTE[1] }], 150);
    charts.p95.setData([xs, view.samples.map((s) => (typeof s.p95 === 'number' ? s.p95 * 1000 : null))]);
    const names = Object.keys(view.queues).sort();
    if (!charts.queues || charts.queueNames !== names.join(',')) {
      if (charts.queues) charts.queues.destroy();
      $('c-queues').replaceChildren();
      charts.queueNames = names.join(',');
      charts.queues = lineChart(
        $('c-queues'),
        names.map((q, i) => ({ label: q, color: PALETTE[i % PALETTE.length] })),
        150,
      );
    }
    charts.queues.setData(
      [xs].concat(names.map((q) => view.samples.map((s) => (s.queues[q] ? s.queues[q].waiting : null)))),
    );
  }

  function seriesOf(view, id, key) {
    const xs = [];
    const ys = [];
    view.samples.forEach((s, i) => {
      const w = s.workers.find((p) => p.id === id);
      xs.push(i);
      ys.push(w && typeof w[key] === 'number' ? w[key] : null);
    });
    return [xs, ys];
  }

  function usageCell(view, w, key, color) {
    const td = el('td');
    const k = w.id + '\u0000' + key;
    let s = sparks.get(k);
    if (!s) {
      s = sparkline(color);
      sparks.set(k, s);
    }
    s.plot.setData(seriesOf(view, w.id, key));
    td.append(s.node, el('span', fmt(w[key], 1), 'spark-value'));
    return td;
  }

  function renderWorkers(view) {
    const body = $('workers').tBodies[0];
    const rows = view.workers.map((w) => {
      const tr = el('tr');
      tr.dataset.worker = w.id;
      tr.append(
        el('td', w.id),
        el('td', w.state, 'state-' + w.state),
        el('td', w.queues.join(', ')),
        el('td', w.active, 'num'),
        usageCell(view, w, 'cpu', PALETTE[0]),
        usageCell(view, w, 'memory', PALETTE[2]),
        el('td', w.residentModels.length ? w.residentModels.join(', ') : '–'),
      );
      const breakers = el('td');
      if (w.breakers.length === 0) breakers.textContent = '–';
      w.breakers.forEach((b, i) => {
        if (i > 0) breakers.append(document.createElement('br'));
        breakers.append(el('span', b.name + ': ' + b.state, 'breaker-' + b.state));
      });
      tr.append(breakers);
      return tr;
    });
    body.replaceChildren(...rows);
    const live = new Set(view.workers.map((w) => w.id));
    for (const [k, s] of sparks) {
      if (!live.has(k.split('\u0000')[0])) {
        s.plot.destroy();
        sparks.delete(k);
      }
    }
  }

  function renderQueues(view) {
    const body = $('queues').tBodies[0];
    const states = ['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed'];
    body.replaceChildren(
      ...Object.keys(view.queues)
        .sort()
        .map((q) => {
          const tr = el('tr');
          tr.append(el('td', q), ...states.map((st) => el('td', view.queues[q][st] ?? 0, 'num')));
          return tr;
        }),
    );
  }

  function render(view) {
    renderTiles(view);
    renderCharts(view);
    renderWorkers(view);
    renderQueues(view);
    const status = $('status');
    status.className = view.errors.length ? 'error' : 'muted';
    status.textContent =
      'updated ' +
      new Date(view.at).toLocaleTimeString() +
      (view.errors.length ? ' — could not read: ' + view.errors.join(', ') : '');
    document.body.dataset.samples = String(view.samples.length);
  }

  async function poll() {
    let interval = 2000;
    try {
      const res = await fetch('data', { cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const view = await res.json();
      interval = Math.max(1000, view.intervalMs || interval);
      render(view);
    } catch (err) {
      const status = $('status');
      status.className = 'error';
      status.textContent = 'fleet data unavailable (' + err.message + '); retrying';
    }
    setTimeout(poll, interval);
  }

  poll();
})();
