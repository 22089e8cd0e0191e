// Shared by the console's pages: the admin token (asked once, kept in sessionStorage,
// sent as Authorization: Bearer), fetches of the admin API, and building DOM from data
// with textContent only (nothing from a session is ever parsed as HTML).
'use strict';

const Lodge = (() => {
  const KEY = 'lodge-admin-token';
  let asking = null;

  const token = () => sessionStorage.getItem(KEY);

  // el('td', {class: 'num', title: x}, 'text', childNode, ...): attributes are set with
  // setAttribute, strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function status(text, bad) {
    const s = document.getElementById('status');
    s.textContent = text || '';
    s.classList.toggle('bad', !!bad);
  }

  // Shows the sign-in form; resolves once a token was entered.
  function askToken(message) {
    if (!asking) {
      asking = new Promise((resolve) => {
        const form = document.getElementById('login');
        const input = document.getElementById('token');
        document.getElementById('main').hidden = true;
        document.getElementById('login-error').textContent = message || '';
        form.hidden = false;
        input.focus();
        form.onsubmit = (event) => {
          event.preventDefault();
          const value = input.value.trim();
          if (!value) return;
          sessionStorage.setItem(KEY, value);
          input.value = '';
          form.hidden = true;
          document.getElementById('main').hidden = false;
          document.getElementById('forget').hidden = false;
          asking = null;
          resolve();
        };
      });
    }
    return asking;
  }

  // fetch() of the admin API with the token; a 401 asks for a (new) token and retries.
  async function api(path, options) {
    for (;;) {
      const headers = new Headers((options && options.headers) || {});
      const t = token();
      if (t) headers.set('Authorization', 'Bearer ' + t);
      const reply = await fetch(path, { ...options, headers, cache: 'no-store' });
      if (reply.status !== 401) return reply;
      let why = '';
      try { why = (await reply.json()).error || ''; } catch (_) { /* not JSON */ }
      if (t) sessionStorage.removeItem(KEY);
      await askToken(t ? 'Refused: ' + why : '');
    }
  }

  // Runs `step` now and again `ms` after each run ends (never two at once); `step`
  // returns false to stop.
  function every(ms, step) {
    const run = async () => {
      let again = true;
      try {
        again = (await step()) !== false;
      } catch (e) {
        status('Lodge did not answer: ' + e.message, true);
      }
      if (again) setTimeout(run, ms);
    };
    run();
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + 's';
    const m = Math.floor(seconds / 60);
    if (m < 60) return m + 'm ' + (seconds % 60) + 's';
    const h = Math.floor(m / 60);
    return h + 'h ' + (m % 60) + 'm';
  }

  function bytes(n) {
    if (n === null || n === undefined) return '–';
    if (n < 1024 * 1024) return (n / 1024).toFixed(0) + ' KiB';
    return (n / (1024 * 1024)).toFixed(1) + ' MiB';
  }

  const text = (v) => (v === null || v === undefined ? '–' : String(v));

  document.addEventListener('DOMContentLoaded', () => {
    const forget = document.getElementById('forget');
    forget.hidden = !token();
    forget.onclick = () => { sessionStorage.removeItem(KEY); location.reload(); };
  });

  return { api, el, status, every, duration, bytes, text };
})();
