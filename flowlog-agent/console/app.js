// flowlog console. Every figure comes from the console's own API on this
// origin: /console/api/panel/<name> runs one SQL query over the Logstore
// (the SQL is shown under each chart) and /console/api/action/<Action>
// forwards the flow-log operations to the agent. Values reach the page only
// as text nodes (never as markup), so a hostile name shows as what it is.
'use strict';
(function () {
  const PRESETS = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800 };
  const PROTOCOLS = { 1: 'ICMP', 2: 'IGMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6', 132: 'SCTP' };
  const PAGES = {
    overview: 'Overview', matrix: 'Traffic matrix', top: 'Top talkers', latency: 'Latency',
    flows: 'Flows', flowlogs: 'Flow logs', query: 'Query',
  };
  const FLOW_FILTERS = ['Addr', 'SrcAddr', 'DstAddr', 'Port', 'Protocol', 'Direction', 'Attachment', 'Region',
    'SrcRegion', 'DstRegion', 'SrcNetwork', 'DstNetwork', 'Status'];

  const S = { session: null, logstores: [], flowLogs: [], charts: [], generation: 0 };

  // ---- DOM --------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') el[k] = true;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const $ = (sel) => document.querySelector(sel);
  // For the charting library's HTML tooltips, the one place markup is built.
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  // ---- units --------------------------------------------------------------
  function fmtBytes(n) {
    if (n === null || n === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = Number(n), i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
  }
  const fmtNum = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 2 }));
  const fmtRate = (bytesPerSec) => `${fmtBytes(Math.round(bytesPerSec))}/s`;
  function fmtUs(us) {
    if (us === null || us === undefined) return '—';
    const v = Number(us);
    return v < 1000 ? `${v.toFixed(0)} µs` : `${(v / 1000).toFixed(2)} ms`;
  }
  const proto = (p) => (p === null || p === undefined ? '—' : PROTOCOLS[p] ? `${PROTOCOLS[p]} (${p})` : String(p));
  const utc = (secs) => new Date(secs * 1000).toISOString().replace('.000Z', 'Z');
  const local = (secs) => new Date(secs * 1000).toLocaleString(undefined, { hour12: false });
  function timeEl(secs) {
    if (secs === null || secs === undefined) return '—';
    return h('time', { datetime: utc(secs), title: `UTC ${utc(secs)}` }, local(secs));
  }
  const FORMATS = {
    bytes: fmtBytes, num: fmtNum, us: fmtUs, proto, text: (v) => (v === null || v === undefined ? '—' : String(v)),
    time: timeEl, rate: fmtRate, pct: (v) => `${(Number(v) * 100).toFixed(1)} %`,
  };

  // ---- state in the URL ---------------------------------------------------
  const params = () => new URLSearchParams(location.search);
  const page = () => { const p = location.hash.slice(1); return PAGES[p] ? p : 'overview'; };
  function link(changes, toPage) {
    const p = params();
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === undefined || v === '') p.delete(k); else p.set(k, v);
    }
    return `?${p.toString()}#${toPage || page()}`;
  }
  function go(changes, toPage) {
    history.pushState(null, '', link(changes, toPage));
    render();
  }
  function range() {
    const p = params();
    const r = p.get('range') || '1h';
    if (r === 'custom' && p.get('from') && p.get('to')) return { from: Number(p.get('from')), to: Number(p.get('to')), preset: 'custom' };
    const now = Math.floor(Date.now() / 1000) + 1;
    const len = PRESETS[r] || PRESETS['1h'];
    return { from: now - len, to: now, preset: PRESETS[r] ? r : '1h' };
  }
  function scope() {
    const p = params();
    const [project, logstore] = (p.get('logstore') || '').split('/');
    return { project, logstore, flowLog: p.get('flowlog') || '' };
  }

  // ---- the console's API ---------------------------------------------------
  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
    toString() { return `${this.code}: ${this.message}`; }
  }
  async function call(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method === 'POST') {
      headers['Content-Type'] = 'application/json';
      if (S.session && S.session.Csrf) headers['X-Flowlog-Csrf'] = S.session.Csrf;
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError('ConsoleUnreachable', `the console at ${location.host} does not answer (${e.message})`, 0);
    }
    let data;
    try { data = await resp.json(); } catch (e) { data = { Code: 'BadAnswer', Message: `HTTP ${resp.status} without a JSON answer` }; }
    if (!resp.ok) throw new ApiError(data.Code || `HTTP${resp.status}`, data.Message || '', resp.status);
    return data;
  }
  const action = (name, body) => call('POST', `/console/api/action/${name}`, body || {});
  function panel(name, extra) {
    const { project, logstore, flowLog } = scope();
    const { from, to } = range();
    const q = new URLSearchParams({ Project: project || '', Logstore: logstore || '', From: String(from), To: String(to) });
    if (flowLog) q.set('FlowLogId', flowLog);
    for (const [k, v] of Object.entries(extra || {})) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
    return call('GET', `/console/api/panel/${name}?${q.toString()}`);
  }

  // ---- building blocks -----------------------------------------------------
  function banner(text, kind) {
    const b = $('#banner');
    b.className = kind || '';
    b.textContent = text || '';
  }
  function errorLine(e) {
    return h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e));
  }
  function select(label, name, value, options, onchange) {
    return h('label', {}, label,
      h('select', { name, onchange: (ev) => onchange(ev.target.value) },
        options.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value) }, text))));
  }
  function csv(cols, rows) {
    const cell = (v) => {
      const s = v === null || v === undefined ? '' : String(v);
      return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    return [cols.map((c) => cell(c.key)).join(','), ...rows.map((r) => cols.map((c) => cell(r[c.key])).join(','))].join('\n') + '\n';
  }
  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  // A table whose cells carry their raw value (data-value) beside the
  // formatted one; `sort` makes headers buttons.
  function table(name, cols, rows, opts) {
    const o = opts || {};
    const head = h('tr', {}, cols.map((c) => {
      const cls = c.num ? 'num' : null;
      if (o.sort && c.sort) {
        const state = o.sort.by === c.sort ? (o.sort.order === 'asc' ? 'ascending' : 'descending') : 'none';
        return h('th', { class: cls, 'data-col': c.key, scope: 'col' },
          h('button', { type: 'button', 'aria-sort': state, onclick: () => o.sort.set(c.sort) }, c.label));
      }
      return h('th', { class: cls, 'data-col': c.key, scope: 'col' }, c.label);
    }), o.rowAction ? h('th', { scope: 'col' }, h('span', { class: 'muted' }, '')) : null);
    const body = rows.map((r, i) => h('tr', {},
      cols.map((c) => {
        const v = c.get ? c.get(r) : r[c.key];
        const shown = (typeof c.fmt === 'function' ? c.fmt : FORMATS[c.fmt || 'text'] || FORMATS.text)(v, r);
        return h('td', { class: [c.num ? 'num' : '', c.cls ? c.cls(r) : ''].join(' ').trim() || null, 'data-col': c.key, 'data-value': v === null || v === undefined ? '' : v }, shown);
      }),
      o.rowAction ? h('td', {}, o.rowAction(r, i)) : null));
    return h('table', { 'data-table': name }, h('thead', {}, head), h('tbody', {}, rows.length ? body : h('tr', {}, h('td', { colspan: cols.length + (o.rowAction ? 1 : 0), class: 'muted' }, 'No records in this range.'))));
  }
  function answerNote(a) {
    const bits = [`${a.Count} row${a.Count === 1 ? '' : 's'}`, `${a.FilesRead} file${a.FilesRead === 1 ? '' : 's'} read`];
    const from = { rollups: 'from the files’ per-window rollups', records: 'from the records' };
    if (a.Source) bits.push(from[a.Source] || (a.Exact ? 'from the files’ per-window sketches (exact)' : 'from the files’ per-window sketches (within 1–2 %)'));
    if (a.Truncated) bits.push('cut at the row limit');
    const skipped = (a.SkippedFiles || []).map((f) => `skipped ${f.File}: ${f.Reason}`);
    return h('p', { class: skipped.length || a.Truncated ? 'error' : 'muted', 'data-complete': String(a.Complete) }, bits.join(' · '), skipped.map((s) => [h('br'), s]));
  }
  // One chart or table with its numbers, a CSV download and its SQL.
  function box(name, title, a, cols, rows, opts) {
    const o = opts || {};
    const chartEl = o.chart ? h('div', { class: `chart${o.tall ? ' tall' : ''}`, role: 'img', 'aria-label': `${title} chart; the numbers are in the table` }) : null;
    const tbl = table(name, cols, rows, o);
    const sec = h('section', { class: 'panel', 'data-panel': name, 'data-source': a && a.Source, 'aria-label': title },
      h('header', {}, h('h2', {}, title), o.controls || null,
        h('div', { class: 'tools' }, h('button', { type: 'button', class: 'plain', onclick: () => download(`${name}.csv`, csv(cols, rows)) }, 'Download CSV'))),
      chartEl,
      chartEl ? h('details', { open: o.open }, h('summary', {}, 'Table'), h('div', { class: 'scroll' }, tbl)) : h('div', { class: 'scroll' }, tbl),
      a ? answerNote(a) : null,
      a && a.Sql ? h('details', {}, h('summary', {}, 'SQL'), h('pre', { class: 'sql' }, a.Sql)) : null);
    if (chartEl && rows.length) {
      // Drawn once in the page, so the chart knows its size.
      requestAnimationFrame(() => draw(chartEl, o.chart()));
    } else if (chartEl) {
      chartEl.replaceWith(h('p', { class: 'muted' }, 'No records in this range.'));
    }
    return sec;
  }
  function draw(el, option) {
    if (!window.echarts || !el.isConnected) return;
    const { onClick, ...opt } = option;
    const c = window.echarts.init(el, null, { renderer: 'canvas' });
    c.setOption(Object.assign({ animation: false, grid: { left: 70, right: 30, top: 40, bottom: 60, containLabel: true } }, opt));
    if (onClick) c.on('click', onClick);
    S.charts.push(c);
  }
  function disposeCharts() {
    for (const c of S.charts) c.dispose();
    S.charts = [];
  }
  // Tooltips list values by series, each part escaped.
  function axisTip(fmt) {
    return (ps) => {
      const list = Array.isArray(ps) ? ps : [ps];
      if (!list.length) return '';
      const head = list[0].axisValueLabel !== undefined ? esc(list[0].axisValueLabel) : '';
      return [head, ...list.map((p) => `${p.marker || ''}${esc(p.seriesName)}: ${esc(fmt(Array.isArray(p.value) ? p.value[1] : p.value))}`)].join('<br>');
    };
  }
  function card(key, label, value, fmt) {
    return h('div', { class: 'card', 'data-card': key, 'data-value': value === null || value === undefined ? '' : value },
      h('div', { class: 'n' }, (FORMATS[fmt] || fmtNum)(value)), h('div', { class: 'l' }, label));
  }
  function controls(...kids) { return h('div', { class: 'controls' }, kids); }
  const metricOptions = [['bytes', 'Bytes'], ['packets', 'Packets']];
  const dirOptions = [['in', 'In (received on the attachment)'], ['out', 'Out (sent by it)']];

  // ---- pages ----------------------------------------------------------------
  async function overview(main) {
    const p = params();
    const split = p.get('split') || 'direction';
    const dir = p.get('dir') || 'in';
    const by = p.get('by') || 'bytes';
    main.append(controls(
      select('Split by', 'split', split, [['direction', 'Direction'], ['protocol', 'Protocol'], ['region-pair', 'Region pair']], (v) => go({ split: v })),
      split === 'direction' ? null : select('Direction', 'dir', dir, dirOptions, (v) => go({ dir: v })),
      select('Show', 'by', by, metricOptions, (v) => go({ by: v }))));
    const [totals, distinct, series, gaps] = await Promise.all([
      panel('totals'), panel('distinct-flows'), panel('series', { Split: split, Direction: split === 'direction' ? null : dir }), panel('gaps'),
    ]);
    const flowsBy = Object.fromEntries(distinct.Logs.map((r) => [r.direction, r.flows]));
    // Over long ranges the count is a HyperLogLog estimate (its SQL says so).
    const estimated = distinct.Source === 'sketches' || (distinct.Sql || '').includes('approx_distinct');
    const cards = h('div', { class: 'cards', 'data-panel': 'totals' });
    let records = 0;
    for (const r of totals.Logs) {
      const d = r.direction === 'in' ? 'In' : r.direction === 'out' ? 'Out' : String(r.direction);
      cards.append(card(`${r.direction}-bytes`, `${d}: bytes`, r.bytes, 'bytes'), card(`${r.direction}-packets`, `${d}: packets`, r.packets),
        card(`${r.direction}-flows`, `${d}: flows (distinct five-tuples${estimated ? ', estimated' : ''})`, flowsBy[r.direction]));
      records += Number(r.records);
    }
    const skipped = gaps.Logs.filter((g) => g.status === 'SKIPDATA').reduce((n, g) => n + Number(g.packets || 0), 0);
    cards.append(card('records', 'OK records', records),
      card('nodata', 'NODATA windows', new Set(gaps.Logs.filter((g) => g.status === 'NODATA').map((g) => `${g.start}|${g.interface}`)).size),
      card('skipdata', 'SKIPDATA windows', new Set(gaps.Logs.filter((g) => g.status === 'SKIPDATA').map((g) => `${g.start}|${g.interface}`)).size),
      card('skipped-packets', 'Packets skipped', skipped));
    main.append(h('section', { 'aria-label': 'Totals', 'data-panel': 'totals-note', 'data-source': totals.Source }, cards, answerNote(totals),
      h('details', {}, h('summary', {}, 'SQL'), h('pre', { class: 'sql' }, totals.Sql), h('pre', { class: 'sql' }, distinct.Sql))));
    const label = (k) => (split === 'protocol' ? proto(Number(k)) : split === 'direction' ? (k === 'in' ? 'In' : 'Out') : k);
    const keys = [...new Set(series.Logs.map((r) => r.key))];
    const rows = series.Logs.map((r) => Object.assign({}, r, { rate: r.end > r.start ? Number(r.bytes) / (r.end - r.start) : null }));
    const marks = gaps.Logs.map((g) => [{ xAxis: g.start * 1000, itemStyle: { color: g.status === 'SKIPDATA' ? 'rgba(179,38,30,.22)' : 'rgba(120,120,120,.18)' }, name: g.status }, { xAxis: g.end * 1000 }]);
    const fmt = by === 'bytes' ? fmtBytes : fmtNum;
    main.append(box('series', `${by === 'bytes' ? 'Bytes' : 'Packets'} per window`, series,
      [{ key: 'start', label: 'Window start', fmt: 'time' }, { key: 'end', label: 'Window end', fmt: 'time' }, { key: 'key', label: 'Split', fmt: label },
        { key: 'bytes', label: 'Bytes', fmt: 'bytes', num: true }, { key: 'packets', label: 'Packets', fmt: 'num', num: true }, { key: 'rate', label: 'Rate', fmt: 'rate', num: true }],
      rows, {
        chart: () => ({
          tooltip: { trigger: 'axis', formatter: axisTip(fmt) },
          legend: { type: 'scroll', top: 0 },
          xAxis: { type: 'time' },
          yAxis: { type: 'value', axisLabel: { formatter: (v) => fmt(v) } },
          series: keys.map((k, i) => ({
            name: label(k), type: 'bar', stack: 'all', barMaxWidth: 28,
            data: series.Logs.filter((r) => r.key === k).map((r) => [r.start * 1000, Number(r[by])]),
            markArea: i === 0 && marks.length ? { silent: true, data: marks } : undefined,
          })),
        }),
      }));
    main.append(box('gaps', 'NODATA and SKIPDATA windows', gaps,
      [{ key: 'start', label: 'Window start', fmt: 'time' }, { key: 'end', label: 'Window end', fmt: 'time' }, { key: 'status', label: 'log-status', cls: (r) => `status-${r.status}` },
        { key: 'interface', label: 'Interface' }, { key: 'packets', label: 'Packets (skipped)', fmt: 'num', num: true }, { key: 'bytes', label: 'Bytes (skipped)', fmt: 'bytes', num: true }],
      gaps.Logs));
  }

  function flowsLink(filters) {
    const clear = {};
    for (const f of FLOW_FILTERS.concat(['Offset', 'Sort', 'Order'])) clear[f] = null;
    return link(Object.assign(clear, filters), 'flows');
  }

  async function matrix(main) {
    const p = params();
    const between = p.get('between') || 'regions';
    const by = p.get('by') || 'bytes';
    main.append(controls(
      select('Between', 'between', between, [['regions', 'Regions'], ['networks', 'Networks'], ['attachments', 'Attachments']], (v) => go({ between: v })),
      select('Show', 'by', by, metricOptions, (v) => go({ by: v }))));
    const a = await panel('matrix', { Between: between, By: by });
    const cellFilters = (r) => {
      if (between === 'regions') return { SrcRegion: r.src, DstRegion: r.dst, Direction: 'in', Status: 'OK' };
      if (between === 'attachments') return { Attachment: r.src, Direction: 'in', Status: 'OK' };
      const side = (v, addr, net) => (String(v).includes('/') ? { [addr]: v } : { [net]: v });
      return Object.assign({ Direction: 'in', Status: 'OK' }, side(r.src, 'SrcAddr', 'SrcNetwork'), side(r.dst, 'DstAddr', 'DstNetwork'));
    };
    const srcs = [...new Set(a.Logs.map((r) => r.src))];
    const dsts = [...new Set(a.Logs.map((r) => r.dst))];
    const fmt = by === 'bytes' ? fmtBytes : fmtNum;
    const max = a.Logs.reduce((m, r) => Math.max(m, Number(r[by])), 0);
    main.append(box('matrix', `Traffic between ${between}: source × destination`, a,
      [{ key: 'src', label: 'Source' }, { key: 'dst', label: 'Destination' }, { key: 'bytes', label: 'Bytes', fmt: 'bytes', num: true },
        { key: 'packets', label: 'Packets', fmt: 'num', num: true }, { key: 'records', label: 'Records', fmt: 'num', num: true }],
      a.Logs, {
        tall: true,
        open: true,
        rowAction: (r) => h('a', { href: flowsLink(cellFilters(r)), 'data-flows': '' }, 'Flows'),
        chart: () => ({
          tooltip: { formatter: (q) => `${esc(srcs[q.value[1]])} → ${esc(dsts[q.value[0]])}<br>${esc(fmt(q.value[2]))}` },
          grid: { left: 140, right: 40, top: 20, bottom: 100, containLabel: true },
          xAxis: { type: 'category', data: dsts, name: 'destination', axisLabel: { rotate: 30 } },
          yAxis: { type: 'category', data: srcs, name: 'source' },
          visualMap: { min: 0, max: max || 1, calculable: true, orient: 'horizontal', left: 'center', bottom: 0, formatter: (v) => fmt(v) },
          series: [{ type: 'heatmap', data: a.Logs.map((r) => [dsts.indexOf(r.dst), srcs.indexOf(r.src), Number(r[by])]), label: { show: a.Logs.length <= 64, formatter: (q) => fmt(q.value[2]) } }],
          onClick: (q) => {
            const r = a.Logs.find((x) => x.src === srcs[q.value[1]] && x.dst === dsts[q.value[0]]);
            if (r) { history.pushState(null, '', flowsLink(cellFilters(r))); render(); }
          },
        }),
      }));
  }

  async function top(main) {
    const p = params();
    const talkers = p.get('talkers') || 'sources';
    const by = p.get('by') || 'bytes';
    const dir = p.get('dir') || 'in';
    const limit = p.get('limit') || '10';
    main.append(controls(
      select('Rank', 'talkers', talkers, [['sources', 'Sources'], ['destinations', 'Destinations'], ['pairs', 'Pairs'], ['ports', 'Ports and protocols']], (v) => go({ talkers: v })),
      select('By', 'by', by, metricOptions, (v) => go({ by: v })),
      select('Direction', 'dir', dir, dirOptions, (v) => go({ dir: v })),
      select('Show', 'limit', limit, [['10', 'Top 10'], ['20', 'Top 20'], ['50', 'Top 50'], ['100', 'Top 100']], (v) => go({ limit: v }))));
    const a = await panel('top', { Talkers: talkers, By: by, Direction: dir, Limit: limit });
    const keyCols = {
      sources: [{ key: 'srcaddr', label: 'Source' }],
      destinations: [{ key: 'dstaddr', label: 'Destination' }],
      pairs: [{ key: 'srcaddr', label: 'Source' }, { key: 'dstaddr', label: 'Destination' }],
      ports: [{ key: 'protocol', label: 'Protocol', fmt: 'proto' }, { key: 'dstport', label: 'Destination port', num: true }],
    }[talkers];
    const name = (r) => ({ sources: r.srcaddr, destinations: r.dstaddr, pairs: `${r.srcaddr} → ${r.dstaddr}`, ports: `${proto(r.protocol)}/${r.dstport}` }[talkers]);
    const fmt = by === 'bytes' ? fmtBytes : fmtNum;
    const filters = (r) => ({
      sources: { SrcAddr: r.srcaddr }, destinations: { DstAddr: r.dstaddr }, pairs: { SrcAddr: r.srcaddr, DstAddr: r.dstaddr }, ports: { Protocol: r.protocol, Port: r.dstport },
    }[talkers]);
    const rows = a.Logs.slice().reverse();
    main.append(box('top', `Top ${talkers} by ${by}, direction ${dir}`, a,
      keyCols.concat([{ key: 'bytes', label: 'Bytes', fmt: 'bytes', num: true }, { key: 'packets', label: 'Packets', fmt: 'num', num: true }, { key: 'records', label: 'Records', fmt: 'num', num: true }]),
      a.Logs, {
        open: true,
        rowAction: (r) => h('a', { href: flowsLink(Object.assign({ Direction: dir, Status: 'OK' }, filters(r))) }, 'Flows'),
        chart: () => ({
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, formatter: axisTip(fmt) },
          xAxis: { type: 'value', axisLabel: { formatter: (v) => fmt(v) } },
          yAxis: { type: 'category', data: rows.map(name) },
          series: [{ name: by, type: 'bar', data: rows.map((r) => Number(r[by])) }],
        }),
      }));
  }

  async function latency(main) {
    const [pairs, series, slowest] = await Promise.all([panel('latency'), panel('latency-series'), panel('slowest', { Limit: 20 })]);
    const labels = pairs.Logs.map((r) => `${r.src} → ${r.dst}`);
    main.append(box('latency', 'Handshake RTT per region pair', pairs,
      [{ key: 'src', label: 'Source region' }, { key: 'dst', label: 'Destination region' }, { key: 'samples', label: 'Samples', fmt: 'num', num: true },
        { key: 'p50', label: 'p50', fmt: 'us', num: true }, { key: 'p90', label: 'p90', fmt: 'us', num: true }, { key: 'p99', label: 'p99', fmt: 'us', num: true },
        { key: 'max', label: 'Max', fmt: 'us', num: true }, { key: 'client_p50', label: 'Client leg p50', fmt: 'us', num: true }, { key: 'server_p50', label: 'Server leg p50', fmt: 'us', num: true }],
      pairs.Logs, {
        open: true,
        chart: () => ({
          tooltip: { trigger: 'axis', formatter: axisTip(fmtUs) },
          legend: { top: 0 },
          xAxis: { type: 'category', data: labels },
          yAxis: { type: 'value', axisLabel: { formatter: (v) => fmtUs(v) } },
          series: ['p50', 'p90', 'p99'].map((k) => ({ name: k, type: 'bar', data: pairs.Logs.map((r) => Number(r[k])) })),
        }),
      }));
    main.append(box('latency-series', 'RTT over time', series,
      [{ key: 'start', label: 'Window start', fmt: 'time' }, { key: 'samples', label: 'Samples', fmt: 'num', num: true }, { key: 'p50', label: 'p50', fmt: 'us', num: true },
        { key: 'p95', label: 'p95', fmt: 'us', num: true }, { key: 'max', label: 'Max', fmt: 'us', num: true }],
      series.Logs, {
        chart: () => ({
          tooltip: { trigger: 'axis', formatter: axisTip(fmtUs) },
          legend: { top: 0 },
          xAxis: { type: 'time' },
          yAxis: { type: 'value', axisLabel: { formatter: (v) => fmtUs(v) } },
          series: ['p50', 'p95', 'max'].map((k) => ({ name: k, type: 'line', showSymbol: true, data: series.Logs.map((r) => [r.start * 1000, Number(r[k])]) })),
        }),
      }));
    main.append(box('slowest', 'Slowest TCP connections', slowest,
      [{ key: 'start', label: 'Window start', fmt: 'time' }, { key: 'srcaddr', label: 'Source' }, { key: 'srcport', label: 'Port', num: true }, { key: 'dstaddr', label: 'Destination' },
        { key: 'dstport', label: 'Port', num: true }, { key: 'interface', label: 'Interface' }, { key: 'rtt', label: 'RTT', fmt: 'us', num: true },
        { key: 'client_side', label: 'Client leg', fmt: 'us', num: true }, { key: 'server_side', label: 'Server leg', fmt: 'us', num: true }, { key: 'bytes', label: 'Bytes', fmt: 'bytes', num: true }],
      slowest.Logs));
  }

  const FLOW_COLS = [
    { key: 'start', label: 'Window start', fmt: 'time', sort: 'start' }, { key: 'interface', label: 'Interface', sort: 'interface' }, { key: 'direction', label: 'Dir' },
    { key: 'srcaddr', label: 'Source', sort: 'srcaddr' }, { key: 'srcport', label: 'Port', num: true, sort: 'srcport' }, { key: 'dstaddr', label: 'Destination', sort: 'dstaddr' },
    { key: 'dstport', label: 'Port', num: true, sort: 'dstport' }, { key: 'protocol', label: 'Protocol', fmt: 'proto', sort: 'protocol' },
    { key: 'packets', label: 'Packets', fmt: 'num', num: true, sort: 'packets' }, { key: 'bytes', label: 'Bytes', fmt: 'bytes', num: true, sort: 'bytes' },
    { key: 'rtt', label: 'RTT', fmt: 'us', num: true, sort: 'rtt' }, { key: 'log-status', label: 'log-status', cls: (r) => `status-${r['log-status']}` },
  ];

  async function flows(main) {
    const p = params();
    const filters = {};
    for (const f of FLOW_FILTERS) if (p.get(f)) filters[f] = p.get(f);
    const sort = p.get('Sort') || 'start';
    const order = p.get('Order') || 'desc';
    const size = Number(p.get('PageSize') || 50);
    const offset = Number(p.get('Offset') || 0);
    const field = (name, label, attrs) => h('label', {}, label, h('input', Object.assign({ name, value: filters[name] || '' }, attrs || {})));
    const pick = (name, label, opts) => h('label', {}, label, h('select', { name }, opts.map(([v, t]) => h('option', { value: v, selected: (filters[name] || '') === v }, t))));
    const form = h('form', { class: 'grid', 'aria-label': 'Search flows', onsubmit: (ev) => {
      ev.preventDefault();
      const data = new FormData(ev.target);
      const changes = { Offset: null };
      for (const f of FLOW_FILTERS) changes[f] = (data.get(f) || '').trim() || null;
      go(changes);
    } },
    field('Addr', 'Address or CIDR (either side)', { placeholder: '10.0.0.0/8' }),
    field('SrcAddr', 'Source address or CIDR'), field('DstAddr', 'Destination address or CIDR'),
    field('Port', 'Port (either side)', { inputmode: 'numeric' }),
    pick('Protocol', 'Protocol', [['', 'Any'], ['6', 'TCP'], ['17', 'UDP'], ['1', 'ICMP'], ['58', 'ICMPv6']]),
    pick('Direction', 'Direction', [['', 'Both'], ['in', 'In'], ['out', 'Out']]),
    field('Attachment', 'Attachment or interface'), field('Region', 'Region (either side)'),
    field('SrcRegion', 'Source region'), field('DstRegion', 'Destination region'),
    field('SrcNetwork', 'Source network'), field('DstNetwork', 'Destination network'),
    pick('Status', 'log-status', [['', 'Any'], ['OK', 'OK'], ['NODATA', 'NODATA'], ['SKIPDATA', 'SKIPDATA']]),
    h('div', {}, h('button', { type: 'submit' }, 'Search'), ' ', h('a', { href: flowsLink({}) }, 'Clear')));
    main.append(h('section', { class: 'panel', 'aria-label': 'Search' }, form));
    const [count, page1] = await Promise.all([
      panel('flows-count', filters),
      panel('flows', Object.assign({ Sort: sort, Order: order, PageSize: size, Offset: offset }, filters)),
    ]);
    const c = count.Logs[0] || { records: 0, bytes: 0, packets: 0 };
    main.append(h('div', { class: 'cards', 'data-panel': 'flows-count' }, card('matching', 'Matching records', c.records), card('matching-bytes', 'Bytes', c.bytes, 'bytes'), card('matching-packets', 'Packets', c.packets)));
    const detail = h('section', { class: 'panel', id: 'record', 'aria-label': 'Record', tabindex: '-1', hidden: true });
    const open = (r) => {
      detail.replaceChildren(h('header', {}, h('h2', {}, 'Record'), h('div', { class: 'tools' }, h('button', { type: 'button', class: 'plain', onclick: () => { detail.hidden = true; } }, 'Close'))),
        h('dl', { class: 'record' }, Object.entries(r).map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k }, v === null ? '—' : ['start', 'end'].includes(k) ? timeEl(v) : String(v))])));
      detail.hidden = false;
      detail.focus();
    };
    const setSort = (col) => go({ Sort: col, Order: sort === col && order === 'desc' ? 'asc' : 'desc', Offset: null });
    const sec = box('flows', 'Flows', page1, FLOW_COLS, page1.Logs, { sort: { by: sort, order, set: setSort }, rowAction: (r) => h('button', { type: 'button', class: 'plain', onclick: () => open(r) }, 'Open') });
    const last = Math.min(offset + page1.Logs.length, Number(c.records));
    sec.append(h('div', { class: 'pager' },
      h('button', { type: 'button', class: 'plain', disabled: offset === 0, onclick: () => go({ Offset: Math.max(0, offset - size) || null }) }, 'Previous'),
      h('span', { 'data-range': `${offset + 1}-${last}` }, page1.Logs.length ? `Rows ${offset + 1}–${last} of ${fmtNum(c.records)}` : 'No rows'),
      h('button', { type: 'button', class: 'plain', disabled: offset + size >= Number(c.records), onclick: () => go({ Offset: offset + size }) }, 'Next'),
      select('Rows per page', 'PageSize', String(size), [['20', '20'], ['50', '50'], ['100', '100'], ['500', '500']], (v) => go({ PageSize: v, Offset: null }))));
    main.append(sec, detail);
  }

  async function flowlogs(main) {
    const result = h('div', { id: 'action-result', role: 'status', 'aria-live': 'polite' });
    main.append(result);
    const down = (why) => main.append(h('section', { class: 'panel', 'data-panel': 'agent-down' }, h('h2', {}, 'The agent does not answer'),
      h('p', { class: 'error', role: 'alert' }, why),
      h('p', {}, 'Flow logs are created and changed through the agent. The traffic pages still read the data directory.')));
    const probe = await call('GET', '/console/api/agent');
    if (!probe.Up) { down(probe.Message); return; }
    let page1, status;
    try {
      [page1, status] = await Promise.all([action('DescribeFlowlogs', { PageSize: 100 }), action('DescribeAgentStatus')]);
    } catch (e) {
      down(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e));
      return;
    }
    const done = (what, e) => {
      result.replaceChildren(e ? errorLine(e) : h('p', { class: 'muted' }, what));
    };
    const act = async (name, body, what, btn) => {
      if (btn) btn.disabled = true;
      try {
        const a = await action(name, body);
        await render();
        $('#action-result').replaceChildren(h('p', { class: 'muted', 'data-done': name }, typeof what === 'function' ? what(a) : what));
      } catch (e) {
        done('', e);
        if (btn) btn.disabled = false;
      }
    };
    const attachments = (f) => f.Attachments.map((a) => a.Netns ? `${a.Interface}@${a.Netns}` : a.Interface).join(', ');
    const buttons = (f) => {
      const id = f.FlowLogId;
      const toggle = f.Status === 'Active'
        ? h('button', { type: 'button', class: 'plain', 'data-act': 'deactivate', onclick: (ev) => act('DeactiveFlowLog', { FlowLogId: id }, `${id} deactivated`, ev.target) }, 'Deactivate')
        : h('button', { type: 'button', 'data-act': 'activate', onclick: (ev) => act('ActiveFlowLog', { FlowLogId: id }, `${id} activated`, ev.target) }, 'Activate');
      const del = h('button', { type: 'button', class: 'danger', 'data-act': 'delete', onclick: (ev) => {
        const b = ev.target;
        if (b.dataset.armed) { act('DeleteFlowlog', { FlowLogId: id }, `${id} deleted`, b); return; }
        b.dataset.armed = '1';
        b.textContent = 'Confirm delete';
        setTimeout(() => { if (b.isConnected) { delete b.dataset.armed; b.textContent = 'Delete'; } }, 8000);
      } }, 'Delete');
      const edit = h('button', { type: 'button', class: 'plain', 'data-act': 'modify', onclick: () => modify(f) }, 'Modify');
      return h('span', {}, toggle, ' ', edit, ' ', del);
    };
    const modifyBox = h('section', { class: 'panel', id: 'modify', hidden: true, tabindex: '-1', 'aria-label': 'Modify flow log' });
    const modify = (f) => {
      modifyBox.replaceChildren(h('h2', {}, `Modify ${f.FlowLogId}`), h('form', { class: 'grid', onsubmit: (ev) => {
        ev.preventDefault();
        const d = new FormData(ev.target);
        act('ModifyFlowLogAttribute', { FlowLogId: f.FlowLogId, FlowLogName: d.get('FlowLogName'), Description: d.get('Description'), Interval: Number(d.get('Interval')) }, `${f.FlowLogId} modified`);
      } },
      h('label', {}, 'Name', h('input', { name: 'FlowLogName', value: f.FlowLogName, required: true })),
      h('label', {}, 'Description', h('input', { name: 'Description', value: f.Description })),
      h('label', {}, 'Window (seconds)', h('input', { name: 'Interval', type: 'number', min: 1, value: f.Interval })),
      h('div', {}, h('button', { type: 'submit' }, 'Save'), ' ', h('button', { type: 'button', class: 'plain', onclick: () => { modifyBox.hidden = true; } }, 'Cancel'))));
      modifyBox.hidden = false;
      modifyBox.focus();
    };
    main.append(box('flowlogs', `Flow logs (${page1.TotalCount})`, null,
      [{ key: 'FlowLogId', label: 'Id' }, { key: 'FlowLogName', label: 'Name' }, { key: 'Description', label: 'Description' }, { key: 'Status', label: 'Status' },
        { key: 'Attached', label: 'Attached', get: (f) => (f.Attached ? 'yes' : 'no') }, { key: 'ProjectName', label: 'Project' }, { key: 'LogStoreName', label: 'Logstore' },
        { key: 'Attachments', label: 'Interfaces', get: attachments }, { key: 'Interval', label: 'Window (s)', num: true }, { key: 'CreationTime', label: 'Created', fmt: 'time' }],
      page1.FlowLogs, { open: true, rowAction: buttons }), modifyBox);
    const st = status.Status || {};
    main.append(box('attachments', 'Attached interfaces', null,
      [{ key: 'interface', label: 'Interface' }, { key: 'netns', label: 'Namespace' }, { key: 'ifindex', label: 'ifindex', num: true }, { key: 'driver', label: 'Driver' },
        { key: 'ingress-hook', label: 'Ingress hook' }, { key: 'egress-hook', label: 'Egress hook' }, { key: 'flow-logs', label: 'Flow logs', get: (a) => (a['flow-logs'] || []).join(', ') }],
      st.attachments || []));
    const fills = [];
    for (const m of status.FlowMaps || []) {
      for (const fam of ['Ipv4', 'Ipv6']) fills.push(Object.assign({ netns: m.Netns, family: fam === 'Ipv4' ? 'IPv4' : 'IPv6' }, m[fam]));
    }
    main.append(box('map-fill', 'Flow map fill', null,
      [{ key: 'netns', label: 'Namespace' }, { key: 'family', label: 'Family' }, { key: 'FlowsLastWindow', label: 'Flows last window', fmt: 'num', num: true },
        { key: 'FlowMapEntries', label: 'Map entries', fmt: 'num', num: true }, { key: 'FillRatio', label: 'Fill', fmt: 'pct', num: true }],
      fills));
    main.append(box('windows', 'Windows', null,
      [{ key: 'FlowLogId', label: 'Flow log' }, { key: 'Interval', label: 'Window (s)', num: true }, { key: 'WindowStart', label: 'Current window start', fmt: 'time' },
        { key: 'LastWindowStart', label: 'Last window start', fmt: 'time' }, { key: 'LastWindowEnd', label: 'Last window end', fmt: 'time' }],
      status.FlowLogs || []));
    const { project, logstore } = scope();
    const create = h('form', { class: 'grid', 'aria-label': 'Create flow log', onsubmit: (ev) => {
      ev.preventDefault();
      const d = new FormData(ev.target);
      const list = String(d.get('Interfaces') || '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
        const [iface, netns] = s.split('@');
        return netns ? { Interface: iface, Netns: netns } : { Interface: iface };
      });
      const body = { FlowLogName: d.get('FlowLogName'), CenId: d.get('CenId'), ProjectName: d.get('ProjectName'), LogStoreName: d.get('LogStoreName'), Attachments: list };
      if (d.get('Description')) body.Description = d.get('Description');
      if (d.get('Interval')) body.Interval = Number(d.get('Interval'));
      act('CreateFlowlog', body, (a) => `created ${a.FlowLogId}`);
    } },
    h('label', {}, 'Name', h('input', { name: 'FlowLogName', required: true })),
    h('label', {}, 'Description', h('input', { name: 'Description' })),
    h('label', {}, 'Enterprise network (CenId)', h('input', { name: 'CenId', required: true, placeholder: 'cen-…' })),
    h('label', {}, 'Project', h('input', { name: 'ProjectName', required: true, value: project || '' })),
    h('label', {}, 'Logstore', h('input', { name: 'LogStoreName', required: true, value: logstore || '' })),
    h('label', {}, 'Interfaces (name or name@netns, comma-separated)', h('input', { name: 'Interfaces', required: true })),
    h('label', {}, 'Window (seconds)', h('input', { name: 'Interval', type: 'number', min: 1, placeholder: 'agent default' })),
    h('div', {}, h('button', { type: 'submit' }, 'Create')));
    main.append(h('section', { class: 'panel', 'aria-label': 'Create flow log' }, h('h2', {}, 'Create a flow log'), create));
  }

  async function query(main) {
    const p = params();
    const sql = p.get('sql') || 'SELECT * FROM logs ORDER BY start DESC, interface LIMIT 100';
    const line = p.get('line') || '100';
    const out = h('div', { id: 'query-result' });
    const run = async (text, n) => {
      const { project, logstore } = scope();
      const { from, to } = range();
      out.replaceChildren(h('p', { class: 'muted' }, 'Running…'));
      try {
        const a = await call('POST', '/console/api/query', { ProjectName: project, LogStoreName: logstore, From: from, To: to, Query: text, Line: Number(n) });
        const cols = [...new Set(a.Logs.flatMap((r) => Object.keys(r)))].map((k) => ({ key: k, label: k, fmt: ['start', 'end'].includes(k) ? 'time' : 'text' }));
        out.replaceChildren(box('query', 'Result', a, cols, a.Logs, {}));
      } catch (e) {
        out.replaceChildren(errorLine(e));
      }
    };
    const form = h('form', { 'aria-label': 'SQL query', onsubmit: (ev) => {
      ev.preventDefault();
      const d = new FormData(ev.target);
      history.replaceState(null, '', link({ sql: d.get('sql'), line: d.get('line') }));
      return run(String(d.get('sql')), d.get('line'));
    } },
    h('label', { for: 'sql' }, 'SQL over the table logs (read-only; GetLogs\u2019 row cap and time limit)'),
    h('textarea', { id: 'sql', name: 'sql', rows: 6, spellcheck: 'false', onkeydown: (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); } } }, sql),
    controls(h('label', {}, 'Rows at most', h('input', { name: 'line', type: 'number', min: 1, max: S.session ? S.session.MaxLine : 10000, value: line })),
      h('button', { type: 'submit' }, 'Run'), h('span', { class: 'muted' }, 'Ctrl+Enter runs it. The time range above applies.')));
    main.append(h('section', { class: 'panel' }, form), out);
    if (p.get('sql')) await run(sql, line);
  }

  const RENDER = { overview, matrix, top, latency, flows, flowlogs, query };

  // ---- the frame ------------------------------------------------------------
  function fillPicker() {
    const p = params();
    const ls = $('#pick-logstore');
    const want = p.get('logstore');
    ls.replaceChildren(...S.logstores.map((l) => h('option', { value: `${l.Project}/${l.Logstore}`, selected: `${l.Project}/${l.Logstore}` === want }, `${l.Project} / ${l.Logstore}`)));
    if (!S.logstores.length) ls.append(h('option', { value: '' }, 'no Logstores yet'));
    const fl = $('#pick-flowlog');
    const chosen = p.get('flowlog') || '';
    fl.replaceChildren(h('option', { value: '' }, 'All flow logs'),
      ...S.flowLogs.map((f) => h('option', { value: f.id, selected: f.id === chosen }, f.name ? `${f.name} (${f.id})` : f.id)));
    if (chosen && !S.flowLogs.some((f) => f.id === chosen)) fl.append(h('option', { value: chosen, selected: true }, chosen));
    const r = range();
    $('#pick-range').value = r.preset;
    const custom = r.preset === 'custom';
    $('#custom-range').hidden = !custom;
    const toLocalInput = (secs) => { const d = new Date(secs * 1000); return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); };
    if (custom) { $('#pick-from').value = toLocalInput(r.from); $('#pick-to').value = toLocalInput(r.to); }
    const text = $('#range-text');
    text.replaceChildren(timeEl(r.from), ' – ', timeEl(r.to));
  }

  async function loadFlowLogs() {
    try {
      const probe = await call('GET', '/console/api/agent');
      if (!probe.Up) throw new ApiError('AgentUnavailable', probe.Message, 503);
      const a = await action('DescribeFlowlogs', { PageSize: 100 });
      S.flowLogs = a.FlowLogs.map((f) => ({ id: f.FlowLogId, name: f.FlowLogName }));
    } catch (e) {
      // The agent is away: the ids that wrote into this range still pick.
      try {
        const a = await panel('flow-log-ids');
        S.flowLogs = a.Logs.map((r) => ({ id: r['flow-log-id'] }));
      } catch (e2) { S.flowLogs = []; }
    }
  }

  function who() {
    const el = $('#who');
    const s = S.session;
    if (!s) { el.replaceChildren(); return; }
    if (!s.Remote) { el.replaceChildren(h('span', { title: `data directory ${s.DataDir}` }, 'local console')); return; }
    if (!s.SignedIn) { el.replaceChildren('not signed in'); return; }
    el.replaceChildren(`signed in as ${s.KeyId}`, h('button', { type: 'button', class: 'plain', onclick: async () => {
      try { await call('POST', '/console/api/sign-out'); } catch (e) { banner(String(e)); }
      await start();
    } }, 'Sign out'));
  }

  function signIn(main) {
    const form = h('form', { class: 'signin panel', 'aria-label': 'Sign in', onsubmit: async (ev) => {
      ev.preventDefault();
      const d = new FormData(ev.target);
      try {
        await call('POST', '/console/api/sign-in', { AccessKeyId: d.get('id'), AccessKeySecret: d.get('secret') });
        await start();
      } catch (e) {
        err.replaceChildren(errorLine(e));
      }
    } },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'This console is served beyond loopback: sign in with an access key of the agent (flowlog create-access-key).'),
    h('label', {}, 'AccessKeyId', h('input', { name: 'id', required: true, autocomplete: 'username' })),
    h('label', {}, 'AccessKeySecret', h('input', { name: 'secret', type: 'password', required: true, autocomplete: 'current-password' })),
    h('button', { type: 'submit' }, 'Sign in'));
    const err = h('div');
    main.replaceChildren(form, err);
    document.body.dataset.state = 'ready';
    document.body.dataset.rendered = String(S.generation);
    form.querySelector('input').focus();
  }

  async function render() {
    const gen = ++S.generation;
    const main = $('#main');
    disposeCharts();
    document.body.dataset.state = 'loading';
    const name = page();
    document.body.dataset.page = name;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
      a.href = link({}, a.dataset.page);
    }
    document.title = `${PAGES[name]} · flowlog console`;
    if (S.session && S.session.Remote && !S.session.SignedIn) { signIn(main); return; }
    fillPicker();
    const content = h('div');
    main.replaceChildren(h('h1', {}, PAGES[name]), content);
    const { project } = scope();
    if (!project && name !== 'flowlogs') {
      content.append(h('p', { class: 'muted' }, `No Logstore holds records yet in ${S.session ? S.session.DataDir : 'the data directory'}. Create a flow log on the Flow logs page.`));
      document.body.dataset.state = 'ready';
      document.body.dataset.rendered = String(gen);
      return;
    }
    try {
      await RENDER[name](content);
      if (gen === S.generation) { document.body.dataset.state = 'ready'; document.body.dataset.rendered = String(gen); }
    } catch (e) {
      if (gen !== S.generation) return;
      content.append(errorLine(e));
      document.body.dataset.state = 'ready';
      document.body.dataset.rendered = String(gen);
    }
  }

  async function start() {
    banner('');
    try {
      S.session = await call('GET', '/console/api/session');
    } catch (e) {
      banner(String(e));
      document.body.dataset.state = 'error';
      return;
    }
    who();
    if (S.session.Remote && !S.session.SignedIn) { render(); return; }
    try {
      S.logstores = (await call('GET', '/console/api/logstores')).Logstores;
    } catch (e) {
      banner(String(e));
      S.logstores = [];
    }
    const p = params();
    if (!p.get('logstore') && S.logstores.length) {
      p.set('logstore', `${S.logstores[0].Project}/${S.logstores[0].Logstore}`);
      history.replaceState(null, '', `?${p.toString()}${location.hash || '#overview'}`);
    }
    await loadFlowLogs();
    await render();
  }

  function wire() {
    $('#picker').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const r = $('#pick-range').value;
      const changes = { logstore: $('#pick-logstore').value || null, flowlog: $('#pick-flowlog').value || null, range: r, from: null, to: null };
      if (r === 'custom') {
        const f = Date.parse($('#pick-from').value), t = Date.parse($('#pick-to').value);
        if (!(f < t)) { banner('Custom range: From must be before To.'); return; }
        banner('');
        changes.from = Math.floor(f / 1000);
        changes.to = Math.floor(t / 1000);
      }
      go(changes);
    });
    $('#pick-range').addEventListener('change', (ev) => {
      $('#custom-range').hidden = ev.target.value !== 'custom';
      if (ev.target.value !== 'custom') $('#picker').requestSubmit();
    });
    for (const id of ['#pick-logstore', '#pick-flowlog']) $(id).addEventListener('change', () => $('#picker').requestSubmit());
    // Links within the console change the URL without loading the page again.
    document.addEventListener('click', (ev) => {
      const a = ev.target.closest && ev.target.closest('a[href^="?"]');
      if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      history.pushState(null, '', a.getAttribute('href'));
      render();
    });
    // Back, forward, and a hash typed by hand.
    window.addEventListener('popstate', render);
    window.addEventListener('resize', () => { for (const c of S.charts) c.resize(); });
  }

  wire();
  start();
}());
