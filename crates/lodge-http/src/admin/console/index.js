// The session table (every 2 s, filtered) with a Stop button per row, and the last
// hour's chart (every 10 s, from /admin/history, drawn as inline SVG).
'use strict';

(() => {
  const { api, el, status, every, duration, bytes, text } = Lodge;
  const rows = new Map(); // session id -> <tr>
  const stopped = new Set(); // ids this page stopped: gone for good, whatever a late list says
  let asked = 0; // the last list request sent; older answers are dropped

  const COLUMNS = ['id', 'state', 'era', 'principal', 'server', 'in_flight', 'waiting_on', 'age', 'memory', 'cpu', 'stop'];

  function query() {
    const q = new URLSearchParams();
    for (const name of ['server', 'principal', 'era', 'state']) {
      const value = document.getElementById('f-' + name).value.trim();
      if (value) q.set(name, value);
    }
    const s = q.toString();
    return s ? '?' + s : '';
  }

  async function stop(id, button) {
    button.disabled = true;
    const reply = await api('/admin/sessions/' + encodeURIComponent(id), { method: 'DELETE' });
    if (reply.status === 204 || reply.status === 404) {
      stopped.add(id);
      const row = rows.get(id);
      if (row) row.remove();
      rows.delete(id);
      status('Stopped session ' + id);
    } else {
      button.disabled = false;
      status('Could not stop ' + id + ': HTTP ' + reply.status, true);
    }
    refresh();
  }

  function newRow(id) {
    const tr = el('tr', { 'data-id': id });
    for (const column of COLUMNS) {
      const td = el('td', { 'data-col': column });
      if (['in_flight', 'age', 'memory', 'cpu'].includes(column)) td.className = 'num';
      tr.append(td);
    }
    const link = el('a', { href: '/console/sessions/' + encodeURIComponent(id), title: id, class: 'session-link' },
      id.length > 14 ? id.slice(0, 12) + '…' : id);
    tr.querySelector('[data-col=id]').append(link);
    const button = el('button', { type: 'button', class: 'stop' }, 'Stop');
    button.onclick = () => stop(id, button);
    tr.querySelector('[data-col=stop]').append(button);
    return tr;
  }

  function fill(tr, s, now) {
    const set = (column, value) => {
      const td = tr.querySelector('[data-col=' + column + ']');
      if (td.textContent !== value) td.textContent = value;
    };
    set('state', text(s.state));
    tr.querySelector('[data-col=state]').className = 'state-' + s.state;
    set('era', text(s.era));
    set('principal', s.principal === null ? 'anonymous' : text(s.principal));
    set('server', text(s.server));
    set('in_flight', text(s.in_flight));
    set('waiting_on', text(s.waiting_on));
    set('age', duration((now - Date.parse(s.created_at)) / 1000));
    set('memory', bytes(s.memory_bytes));
    set('cpu', s.cpu_seconds === null || s.cpu_seconds === undefined ? '–' : s.cpu_seconds.toFixed(2) + ' s');
  }

  async function refresh() {
    const mine = ++asked;
    const reply = await api('/admin/sessions' + query());
    const body = await reply.json();
    if (mine !== asked) return; // a newer request (filters changed, a stop) answers instead
    if (!reply.ok) {
      status(body.error || 'HTTP ' + reply.status, true);
      return;
    }
    const tbody = document.querySelector('#sessions tbody');
    const now = Date.now();
    const seen = new Set();
    const sessions = body.sessions.filter((s) => !stopped.has(s.id));
    for (const s of sessions) {
      seen.add(s.id);
      let tr = rows.get(s.id);
      if (!tr) {
        tr = newRow(s.id);
        rows.set(s.id, tr);
      }
      fill(tr, s, now);
      tbody.append(tr); // keeps the API's order (oldest first); moving is cheap
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
    document.getElementById('count').textContent = '(' + sessions.length + ')';
    document.getElementById('empty').hidden = sessions.length > 0;
    status('Updated ' + new Date(now).toLocaleTimeString());
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, content) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (content !== undefined) node.textContent = content;
    return node;
  }

  // One hour of one-minute buckets as an SVG: `bars` drawn as columns, `lines` as
  // polylines, on one scale from 0 to the largest value shown.
  function plot(minutes, label, bars, lines) {
    const W = 600, H = 120, L = 40, B = 18, T = 8;
    const nowMinute = Math.floor(Date.now() / 60000) * 60;
    const x = (start) => L + ((start - (nowMinute - 59 * 60)) / (60 * 60)) * (W - L);
    const fields = [...bars, ...lines].map(([, field]) => field);
    const max = Math.max(1, ...minutes.flatMap((m) => fields.map((f) => m[f])));
    const y = (v) => H - B - (v / max) * (H - B - T);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    root.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }));
    root.append(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    root.append(svg('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, String(max)));
    root.append(svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'));
    root.append(svg('text', { x: L, y: H - 4 }, '−60 min'));
    root.append(svg('text', { x: W, y: H - 4, 'text-anchor': 'end' }, 'now'));
    const bar = (W - L) / 60;
    for (const [cls, field] of bars) {
      for (const m of minutes.filter((m) => m[field] > 0)) {
        root.append(svg('rect', { class: cls, x: x(m.start) - bar / 2 + 1, y: y(m[field]),
          width: Math.max(1, bar - 2), height: H - B - y(m[field]) }));
      }
    }
    for (const [cls, field] of lines) {
      if (minutes.length === 0) continue;
      const points = minutes.map((m) => x(m.start).toFixed(1) + ',' + y(m[field]).toFixed(1)).join(' ');
      root.append(svg('polyline', { class: cls, points }));
      for (const m of minutes) {
        root.append(svg('circle', { class: cls + '-dot', cx: x(m.start).toFixed(1), cy: y(m[field]).toFixed(1), r: 2 }));
      }
    }
    return root;
  }

  async function chart() {
    const reply = await api('/admin/history');
    if (!reply.ok) return;
    const { minutes } = await reply.json();
    const sessions = plot(minutes, 'sessions over the last hour',
      [['started', 'sessions_started']], [['live', 'live_sessions'], ['flight', 'in_flight']]);
    const requests = plot(minutes, 'requests per minute over the last hour', [['requests', 'requests']], []);
    const legend = el('div', { class: 'legend' },
      el('span', { class: 'k-live' }, '— sessions live'),
      el('span', { class: 'k-started' }, '▮ sessions started'),
      el('span', { class: 'k-flight' }, '-- calls in flight'),
      el('span', { class: 'k-requests' }, '▮ requests (own scale, below)'));
    document.getElementById('chart').replaceChildren(sessions, legend, requests);
  }

  document.addEventListener('DOMContentLoaded', () => {
    const filters = document.getElementById('filters');
    filters.addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
    filters.addEventListener('change', () => refresh());
    filters.addEventListener('input', () => refresh());
    every(2000, refresh);
    every(10000, chart);
  });
})();
