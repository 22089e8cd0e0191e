// One session: its facts, its protocol events (appended as they come) and its server's
// last stderr lines, polled every second from GET /admin/sessions/{id}; a 404 says the
// session ended, and why.
'use strict';

(() => {
  const { api, el, status, every, duration, bytes, text } = Lodge;
  const id = decodeURIComponent(location.pathname.replace(/^\/console\/sessions\//, ''));
  const MAX_EVENTS = 1000;
  let previous = []; // the last poll's events, as JSON strings

  // The events of `current` not in `previous`: the API returns a sliding window of the
  // last events, so the longest tail of `previous` that `current` starts with is old.
  function fresh(current) {
    for (let k = Math.min(previous.length, current.length); k > 0; k--) {
      let same = true;
      for (let i = 0; i < k && same; i++) same = previous[previous.length - k + i] === current[i];
      if (same) return current.slice(k);
    }
    return current;
  }

  function facts(s) {
    const dl = document.getElementById('facts');
    const pairs = [
      ['Server', text(s.server)], ['Era', text(s.era)], ['Protocol', text(s.protocol_version)],
      ['Principal', s.principal === null ? 'anonymous' : text(s.principal)],
      ['State', text(s.state)], ['In flight', text(s.in_flight)], ['Waiting on', text(s.waiting_on)],
      ['Age', duration((Date.now() - Date.parse(s.created_at)) / 1000)],
      ['Last activity', text(s.last_activity_at)], ['Idle deadline', text(s.idle_deadline)],
      ['Lifetime deadline', text(s.lifetime_deadline)], ['PID', text(s.pid)],
      ['Memory', bytes(s.memory_bytes)],
      ['CPU', s.cpu_seconds === null || s.cpu_seconds === undefined ? '–' : s.cpu_seconds.toFixed(2) + ' s'],
      ['Hosting', text(s.hosting)],
    ];
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }

  function events(list) {
    const current = list.map((e) => JSON.stringify(e));
    const added = fresh(current);
    previous = current;
    const tbody = document.querySelector('#events tbody');
    for (const json of added) {
      const e = JSON.parse(json);
      tbody.append(el('tr', { class: 'event', 'data-method': e.method || '' },
        el('td', { class: 'mono' }, text(e.time)), el('td', {}, text(e.direction)),
        el('td', {}, text(e.kind)), el('td', { class: 'mono' }, text(e.method)),
        el('td', {}, text(e.status)), el('td', { class: 'num' }, text(e.code))));
    }
    while (tbody.children.length > MAX_EVENTS) tbody.firstElementChild.remove();
  }

  async function poll() {
    const reply = await api('/admin/sessions/' + encodeURIComponent(id));
    const body = await reply.json();
    if (reply.status === 404) {
      const ended = document.getElementById('ended');
      const why = body.error || 'not found';
      // "session ID ended: REASON" while Lodge remembers it; "no session ID" after (or never).
      ended.textContent = why.startsWith('no session')
        ? 'No such session (it never existed, or ended long ago): ' + why
        : 'This session has ended: ' + why;
      ended.hidden = false;
      status('Ended');
      return false;
    }
    if (!reply.ok) {
      status(body.error || 'HTTP ' + reply.status, true);
      return true;
    }
    facts(body);
    events(body.events || []);
    const stderr = document.getElementById('stderr');
    const lines = (body.stderr || []).join('\n');
    if (stderr.textContent !== lines) stderr.textContent = lines;
    status('Updated ' + new Date().toLocaleTimeString());
    return true;
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('session-id').textContent = id;
    document.title = 'Lodge session ' + id;
    every(1000, poll);
  });
})();
