// The gateway's web console: the page a team lead keeps open while agents work.
//
// Plain JavaScript, no build step, served from the gateway binary at /ui/. Hash routes:
//   #/            the tasks view (every task the token may see, most recently active first, live)
//   #/agents      the agents view (status, sessions, last action, live)
//   #/task/{id}   one task: its live timeline, files (each one's history, any version, the
//                 diff between two), leases, members
// Data comes from the gateway's own REST resources and read-only tools, and its SSE stream
// (GET /tasks/{id}/events), read with fetch() so the bearer token travels in a header and never
// in a URL. A stream resumes from its last event id after any disconnect (Last-Event-ID), and
// events are deduplicated by id, so a reconnect or a gateway restart leaves no gap and no
// duplicate. The timeline keeps a window of the newest events, not every event forever.
'use strict';

const TOKEN_KEY = 'mcp-gateway-token';
const THEME_KEY = 'mcp-gateway-theme';
/** Timeline rows kept in the page; older ones are dropped (the counters keep counting). */
const WINDOW = 500;
/** Reconnect back-off bounds, ms. */
const RETRY_MIN = 500;
const RETRY_MAX = 5000;

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Builds an element; children are nodes or text (never parsed as HTML). */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const enc = encodeURIComponent;

/** `1 event`, `2 events`. */
function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const two = (n) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function fmtAgo(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Compares two stream ids "<ms>-<seq>" numerically; -1, 0 or 1. */
function cmpId(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/** Presence from the last activity: active (< 1 min), idle (< 10 min), offline. */
function presence(iso) {
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  return s < 60 ? 'active' : s < 600 ? 'idle' : 'offline';
}

// ---------------------------------------------------------------------------------------------
// Token and API

const Token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

function authHeaders(extra) {
  const headers = Object.assign({ Accept: 'application/json' }, extra || {});
  const t = Token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

async function api(path) {
  const resp = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401) askToken('The gateway needs a bearer token.');
    throw new ApiError(resp.status, body);
  }
  return body;
}

/** Calls a read-only tool (`POST /tools/{name}`) with a JSON body. */
async function tool(name, body) {
  const resp = await fetch(`/tools/${name}`, {
    method: 'POST',
    headers: authHeaders({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
    cache: 'no-store',
  });
  let answer = null;
  try { answer = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401) askToken('The gateway needs a bearer token.');
    throw new ApiError(resp.status, answer);
  }
  return answer;
}

function askToken(why) {
  const dlg = document.getElementById('token-dialog');
  if (dlg.open) return;
  const p = dlg.querySelector('p');
  if (why) p.dataset.why = why;
  document.getElementById('token-input').value = '';
  dlg.showModal();
}

// ---------------------------------------------------------------------------------------------
// The live stream of one task: SSE read through fetch, resumed by id, deduplicated.

class TaskStream {
  /**
   * @param {string} taskId
   * @param {(ev: object) => void} onEvent  every new event once, in stream order
   * @param {(state: string, text: string) => void} onStatus  'live' | 'retry' | 'closed'
   */
  constructor(taskId, onEvent, onStatus) {
    this.taskId = taskId;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = null; // the newest event id delivered
    this.abort = null;
    this.stopped = false;
    this.retry = RETRY_MIN;
  }

  start() { this.loop(); }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    while (!this.stopped) {
      let wait = this.retry;
      try {
        wait = await this.once();
        this.retry = RETRY_MIN;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          this.onStatus('closed', err.message);
          return;
        }
        // Gateway down, network gone, or a task that does not exist yet: try again.
        this.retry = Math.min(this.retry * 2, RETRY_MAX);
      }
      if (this.stopped) return;
      this.onStatus('retry', `reconnecting in ${(wait / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** One connection; resolves with the delay before the next one. */
  async once() {
    this.abort = new AbortController();
    const headers = authHeaders({ Accept: 'text/event-stream' });
    // First connection: the whole (capped) history; later ones: after the last event seen.
    let url = `/tasks/${enc(this.taskId)}/events`;
    if (this.lastId) headers['Last-Event-ID'] = this.lastId;
    else url += '?since=0';
    const resp = await fetch(url, { headers, signal: this.abort.signal, cache: 'no-store' });
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (_) { /* not JSON */ }
      if (resp.status === 401) askToken('The gateway needs a bearer token.');
      throw new ApiError(resp.status, body);
    }
    this.onStatus('live', this.lastId ? `live · resumed after ${this.lastId}` : 'live');
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let next = this.retry;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      // One split per chunk (a burst may bring hundreds of messages at once).
      const blocks = (buf + value.replace(/\r\n?/g, '\n')).split('\n\n');
      buf = blocks.pop();
      for (const block of blocks) {
        const msg = parseSse(block);
        if (!msg) continue;
        if (msg.retry) next = msg.retry;
        if (msg.event === 'cutoff') {
          // The server ended the stream on purpose and names where to resume.
          try {
            const c = JSON.parse(msg.data);
            if (c.resume_from && (!this.lastId || cmpId(c.resume_from, this.lastId) > 0)) {
              this.lastId = c.resume_from;
            }
          } catch (_) { /* keep our own position */ }
          continue;
        }
        this.deliver(msg);
      }
    }
    return next;
  }

  deliver(msg) {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    const id = msg.id || ev.id;
    if (id) {
      if (this.lastId && cmpId(id, this.lastId) <= 0) return; // already shown
      this.lastId = id;
      ev.id = id;
    }
    this.onEvent(ev);
  }
}

function parseSse(block) {
  const msg = { data: '' };
  let any = false;
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    any = true;
    if (field === 'data') msg.data += (msg.data ? '\n' : '') + value;
    else if (field === 'id') msg.id = value;
    else if (field === 'event') msg.event = value;
    else if (field === 'retry') msg.retry = Number(value) || undefined;
  }
  return any && (msg.data || msg.event) ? msg : null;
}

// ---------------------------------------------------------------------------------------------
// Rendering one event of the timeline

/** Event types that are refusals: shown as conflicts. */
function isConflict(ev) {
  return /_refused$|conflict/.test(ev.type) || (ev.data && ev.data.refused === true);
}

function diffBlock(diff) {
  const pre = h('pre', { class: 'diff' });
  for (const line of String(diff).split('\n')) {
    if (line === '') continue;
    const cls = line.startsWith('@@') ? 'hunk'
      : line.startsWith('+++') || line.startsWith('---') ? 'hunk'
      : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : '';
    pre.append(h('span', { class: cls }, line));
  }
  return pre;
}

function stepFields(step) {
  const skip = new Set(['timestamp', 'task_id', 'agent_id']);
  const parts = [];
  for (const [k, v] of Object.entries(step || {})) {
    if (skip.has(k)) continue;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${text.length > 120 ? text.slice(0, 117) + '…' : text}`);
  }
  return parts.join('  ');
}

function describe(ev) {
  const d = ev.data || {};
  const fence = d.fence !== undefined ? h('span', { class: 'chip' }, `fence ${d.fence}`) : null;
  switch (ev.type) {
    case 'step_logged':
      return [h('span', { class: 'fields' }, stepFields(d.step))];
    case 'file_written':
      return [h('code', {}, d.path), ' ', h('span', { class: 'chip' }, `v${d.version}`), ' ',
        h('span', { class: 'muted' }, fmtBytes(d.size || 0)), ' ', fence];
    case 'file_edited':
      return [h('code', {}, d.path), ' ', h('span', { class: 'chip' }, `v${d.version}`), ' ', fence,
        d.diff ? diffBlock(d.diff) : null];
    case 'file_deleted':
      return [h('code', {}, d.path), ' ', h('span', { class: 'chip' }, `v${d.version}`), ' ', fence];
    case 'lock_acquired':
    case 'lock_renewed':
      return [h('code', {}, d.path), ' by ', h('b', {}, d.owner || ev.agentId), ' ', fence,
        d.expires_at ? h('span', { class: 'muted' }, ` until ${fmtTime(d.expires_at)}`) : null];
    case 'lock_released':
      return [h('code', {}, d.path), ' ', fence];
    case 'agent_joined':
    case 'agent_left':
      return [h('b', {}, d.agent_id || ev.agentId)];
    case 'write_refused':
    case 'claim_refused': {
      const why = d.holder ? [' held by ', h('b', {}, d.holder),
        d.expires_at ? h('span', { class: 'muted' }, ` until ${fmtTime(d.expires_at)}`) : null]
        : d.last_fence !== undefined ? [` fence ${d.fence} < ${d.last_fence}`]
        : d.current_version !== undefined ? [` expected v${d.expected_version ?? '?'}, now v${d.current_version ?? '—'}`]
        : [];
      return [h('span', { class: 'chip bad' }, d.code), ' ', h('code', {}, d.path), ' ',
        h('span', { class: 'muted' }, d.op), ...why];
    }
    case 'message_sent':
      // Metadata only: a direct message's subject and body are for its recipients.
      return ['#', String(d.message_id), ' to ', h('b', {}, (d.to || []).join(', ')), ' ',
        d.importance && d.importance !== 'normal' ? h('span', { class: 'chip' }, d.importance) : null, ' ',
        d.subject ? h('span', { class: 'fields' }, d.subject) : null,
        h('span', { class: 'muted' }, ` thread ${d.thread_id}`)];
    case 'task_created':
    case 'task_updated': {
      const t = d.task || d;
      return [t.title ? h('b', {}, t.title) : null, ' ', t.status ? h('span', { class: 'chip' }, t.status) : null,
        t.assigned_agent_id ? h('span', { class: 'muted' }, ` assigned to ${t.assigned_agent_id}`) : null];
    }
    default: {
      const text = JSON.stringify(d);
      return [h('span', { class: 'fields' }, text.length > 300 ? text.slice(0, 297) + '…' : text)];
    }
  }
}

function eventRow(ev) {
  return h('div', { class: 'ev' + (isConflict(ev) ? ' conflict' : ''), dataset: { id: ev.id || '', type: ev.type } },
    h('span', { class: 't', title: ev.timestamp }, fmtTime(ev.timestamp)),
    h('span', { class: 'who', title: ev.agentId || '' }, ev.agentId || h('span', { class: 'muted' }, '—')),
    h('span', { class: 'what' }, h('span', { class: `kind ${ev.type}` }, ev.type.replace(/_/g, ' ')), ' ',
      ...describe(ev)));
}

// ---------------------------------------------------------------------------------------------
// Views

let current = null; // the view on screen: { stop() }

function setConn(state, text) {
  const c = document.getElementById('conn');
  c.className = 'conn ' + (state || '');
  c.textContent = text || '';
}

/** How often a list view asks again (the lists have no stream of their own). */
const LIST_REFRESH_MS = 500;
const LIST_PAGE = 50;

/**
 * A live, paged list (tasks or agents): a toolbar of filters, a table redrawn in place every
 * LIST_REFRESH_MS, and previous / next pages by the API's cursors.
 * @param {object} o  {root, title, path, key, searchLabel, filters: [el], query(): URLSearchParams,
 *                     render(body, items), empty}
 */
function listView(o) {
  let stopped = false;
  let timer = null;
  let cursors = [null]; // cursors[i]: the cursor of page i (null: the first page)
  let page = 0;
  let seq = 0; // answers to older requests are dropped
  let lastDrawn = '';
  const search = h('input', { type: 'search', id: 'list-search', placeholder: `${o.searchLabel} (/)`, 'aria-label': o.searchLabel });
  const body = h('div', { class: 'body' }, h('div', { class: 'empty' }, 'Loading…'));
  const info = h('span', { class: 'muted', id: 'list-info' });
  const prev = h('button', { type: 'button', id: 'list-prev', disabled: '' }, '← Newer');
  const next = h('button', { type: 'button', id: 'list-next', disabled: '' }, 'Older →');
  prev.addEventListener('click', () => { if (page > 0) { page--; refresh(); } });
  next.addEventListener('click', () => { if (cursors[page + 1]) { page++; refresh(); } });
  o.root.append(h('section', { class: 'page' },
    h('h1', {}, o.title),
    h('div', { class: 'toolbar' }, search, ...o.filters),
    h('div', { class: 'panel', style: 'flex:1' }, body),
    h('div', { class: 'toolbar pager' }, info, h('span', { class: 'spacer' }), prev, next)));

  async function refresh() {
    if (stopped) return;
    clearTimeout(timer);
    const mine = ++seq;
    const q = o.query();
    const text = search.value.trim();
    if (text) q.set('q', text);
    q.set('limit', String(LIST_PAGE));
    if (cursors[page]) q.set('cursor', cursors[page]);
    try {
      const r = await api(`${o.path}?${q}`);
      if (stopped || mine !== seq) return;
      const items = r[o.key] || [];
      const filtered = Boolean(text) || [...o.query().keys()].length > 0;
      // Redraw only what changed (times are shown relative, so redraw those each few seconds).
      const drawn = JSON.stringify([items, filtered, Math.floor(Date.now() / 5000)]);
      if (drawn !== lastDrawn) {
        lastDrawn = drawn;
        if (items.length) o.render(body, items);
        else body.replaceChildren(h('div', { class: 'empty' }, filtered ? 'Nothing matches.' : o.empty));
      }
      cursors[page + 1] = r.next_cursor || null;
      cursors.length = page + 2;
      const from = page * LIST_PAGE;
      info.textContent = r.total ? `${from + 1}–${from + items.length} of ${r.total}` : '';
      prev.disabled = page === 0;
      next.disabled = !r.next_cursor;
      setConn('live', 'up to date');
    } catch (err) {
      if (stopped || mine !== seq) return;
      body.replaceChildren(h('div', { class: 'empty error' }, err.message));
      setConn('retry', 'retrying');
    }
    if (!stopped && mine === seq) timer = setTimeout(refresh, LIST_REFRESH_MS);
  }
  const restart = () => { cursors = [null]; page = 0; refresh(); };
  search.addEventListener('input', restart);
  for (const f of o.filters) if (f.tagName === 'SELECT' || f.tagName === 'INPUT') f.addEventListener('input', restart);
  refresh();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

/** The tasks view: every task the token may see, most recently active first; live. */
function tasksView(root) {
  const status = h('select', { id: 'status-filter', 'aria-label': 'Status' },
    ...['', 'pending', 'in_progress', 'blocked', 'review', 'done', 'failed'].map((v) => h('option', { value: v }, v || 'any status')));
  const agent = h('input', { id: 'agent-filter', placeholder: 'agent', 'aria-label': 'Only tasks of this agent', size: '12' });
  const openInput = h('input', { id: 'open-task', placeholder: 'task id', 'aria-label': 'Open a task by id', size: '14' });
  const open = h('form', { class: 'inline', onsubmit: (e) => {
    e.preventDefault();
    const id = openInput.value.trim();
    if (id) location.hash = `#/task/${enc(id)}`;
  } }, openInput, h('button', { type: 'submit' }, 'Open'));
  return listView({
    root, title: 'Tasks', path: '/resources/tasks', key: 'tasks', searchLabel: 'Search tasks',
    filters: [status, agent, open],
    query() {
      const q = new URLSearchParams();
      if (status.value) q.set('status', status.value);
      if (agent.value.trim()) q.set('agent', agent.value.trim());
      return q;
    },
    render: renderTasks,
    empty: 'No task yet. Agents create one by writing to it.',
  });
}

function renderTasks(body, tasks) {
  const selected = body.querySelector('tr.sel');
  const selId = selected && selected.dataset.id;
  const rows = tasks.map((t) => h('tr', {
    tabindex: '0', dataset: { id: t.task_id },
    class: t.task_id === selId ? 'sel' : '',
    onclick: () => { location.hash = `#/task/${enc(t.task_id)}`; },
  },
  h('td', {}, h('a', { href: `#/task/${enc(t.task_id)}` }, t.task_id), t.title ? h('div', { class: 'muted' }, t.title) : null),
  h('td', {}, t.status ? h('span', { class: `chip task-${t.status}` }, t.status) : h('span', { class: 'muted' }, '—')),
  h('td', {}, t.assigned_agent_id || h('span', { class: 'muted' }, '—')),
  h('td', {}, (t.agents || []).join(', ')),
  h('td', { class: 'num' }, t.lease_count ?? ''),
  h('td', { class: 'num' }, t.file_count ?? ''),
  h('td', { class: 'num' }, t.step_count ?? ''),
  h('td', { title: t.last_activity || '' }, t.last_activity ? fmtAgo(t.last_activity) : '')));
  body.replaceChildren(h('table', { id: 'tasks-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', {}, 'Status'), h('th', {}, 'Assigned'),
      h('th', {}, 'Agents'), h('th', { class: 'num' }, 'Leases'), h('th', { class: 'num' }, 'Files'),
      h('th', { class: 'num' }, 'Steps'), h('th', {}, 'Last activity'))),
    h('tbody', {}, rows)));
}

/** The agents view: every agent on the tasks the token may see, most recently seen first. */
function agentsView(root) {
  const task = h('input', { id: 'task-filter', placeholder: 'task', 'aria-label': 'Only agents on this task', size: '14' });
  return listView({
    root, title: 'Agents', path: '/resources/agents', key: 'agents', searchLabel: 'Search agents',
    filters: [task],
    query() {
      const q = new URLSearchParams();
      if (task.value.trim()) q.set('task', task.value.trim());
      return q;
    },
    render: renderAgents,
    empty: 'No agent has acted yet.',
  });
}

function renderAgents(body, agents) {
  const taskLink = (t) => h('a', { href: `#/task/${enc(t)}` }, t);
  const rows = agents.map((a) => h('tr', { tabindex: '0', dataset: { id: a.agent_id } },
    h('td', {}, a.agent_id),
    h('td', {}, h('span', { class: `chip status-${a.status}` }, a.status)),
    h('td', {}, ...(a.tasks || []).flatMap((t, i) => (i ? [', ', taskLink(t)] : [taskLink(t)]))),
    h('td', {}, a.last_action || '', a.last_task ? h('span', { class: 'muted' }, ' on ', taskLink(a.last_task)) : null),
    h('td', { title: a.last_seen || '' }, a.last_seen ? fmtAgo(a.last_seen) : '')));
  body.replaceChildren(h('table', { id: 'agents-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Agent'), h('th', {}, 'Status'), h('th', {}, 'Sessions'),
      h('th', {}, 'Last action'), h('th', {}, 'Last seen'))),
    h('tbody', {}, rows)));
}

/** The task view: live timeline, files and their history, leases, members. */
function taskView(root, taskId) {
  const counts = { events: 0, steps: 0, conflicts: 0 };
  const leases = new Map(); // path -> { owner, fence, expires_at }
  const leaseEvents = new Map(); // path -> lease events seen, to tell a listing from newer events
  const pending = []; // events received, not yet drawn
  let follow = true;

  const title = h('h1', {}, h('a', { href: '#/' }, 'Tasks'), ' / ', h('span', { id: 'task-title' }, taskId),
    h('span', { class: 'chip', id: 'task-status' }, '…'));
  const countsEl = h('span', { class: 'muted', id: 'counts' });
  const timeline = h('div', { class: 'timeline', id: 'timeline', tabindex: '0', 'aria-label': 'Timeline' });
  const filesBody = h('div', { class: 'body', id: 'files' });
  const leasesBody = h('div', { class: 'body', id: 'leases' });
  const membersBody = h('div', { class: 'body', id: 'members' });
  const fileHist = fileHistory(taskId);
  root.append(h('section', { class: 'page' }, title,
    h('div', { class: 'grid' },
      h('div', { class: 'panel' }, h('h2', {}, 'Timeline', countsEl), timeline),
      h('div', { class: 'side' },
        h('div', { class: 'panel' }, h('h2', {}, 'Leases'), leasesBody),
        h('div', { class: 'panel' }, h('h2', {}, 'Members'), membersBody),
        h('div', { class: 'panel' }, h('h2', {}, 'Files'), filesBody))),
    fileHist.panel));
  timeline.append(h('div', { class: 'empty', id: 'timeline-empty' }, 'Waiting for events…'));

  function drawCounts() {
    countsEl.textContent = [plural(counts.events, 'event'), plural(counts.steps, 'step'), plural(counts.conflicts, 'conflict')].join(' · ');
    countsEl.classList.toggle('error', counts.conflicts > 0);
  }

  // Leases from the stream: claims add, releases remove, expiry is counted down here.
  function trackLease(ev) {
    const d = ev.data || {};
    if (ev.type.startsWith('lock_')) leaseEvents.set(d.path, (leaseEvents.get(d.path) || 0) + 1);
    if (ev.type === 'lock_acquired' || ev.type === 'lock_renewed') {
      leases.set(d.path, { owner: d.owner || ev.agentId, fence: d.fence, expires_at: d.expires_at });
    } else if (ev.type === 'lock_released') {
      leases.delete(d.path);
    }
  }

  // Leases as they are now (list_leases), so those claimed before the page opened show too;
  // on every (re)connection. A path with lease events newer than the request keeps what the
  // events say.
  async function loadLeases() {
    const seen = new Map(leaseEvents);
    const sent = Date.now();
    let r;
    try { r = await tool('list_leases', { task_id: taskId }); } catch (_) { return; }
    const changed = (path) => (leaseEvents.get(path) || 0) !== (seen.get(path) || 0);
    const listed = new Set();
    for (const l of r.leases || []) {
      listed.add(l.path);
      if (changed(l.path)) continue;
      // The countdown from the time left, not from the two clocks' difference.
      leases.set(l.path, { owner: l.holder, fence: l.fence, expires_at: new Date(sent + l.ttl_ms_left).toISOString(), waiters: l.waiters || [] });
    }
    for (const path of [...leases.keys()]) {
      if (!listed.has(path) && !changed(path)) leases.delete(path);
    }
    drawLeases();
  }

  function drawLeases() {
    const now = Date.now();
    const items = [];
    for (const [path, l] of [...leases.entries()].sort()) {
      const left = Math.round((new Date(l.expires_at).getTime() - now) / 1000);
      if (left < -5) { leases.delete(path); continue; }
      items.push(h('li', { class: 'lease' + (left <= 0 ? ' expired' : ''), dataset: { path } },
        h('span', {}, h('code', {}, path), ' ', h('b', {}, l.owner), ' ', h('span', { class: 'chip' }, `fence ${l.fence}`),
          // A directory lease (its path ends in '/') covers everything beneath it.
          path.endsWith('/') ? h('span', { class: 'chip', title: 'covers everything beneath it' }, 'directory') : null,
          l.waiters && l.waiters.length ? h('span', { class: 'muted' }, ` waiting: ${l.waiters.join(', ')}`) : null),
        h('span', { class: 'left' }, left > 0 ? `${left} s` : 'expired')));
    }
    leasesBody.replaceChildren(items.length ? h('ul', { class: 'plain' }, items) : h('div', { class: 'empty' }, 'No lease held.'));
  }

  let filesTimer = null;
  async function loadFiles() {
    try {
      const r = await api(`/resources/tasks/${enc(taskId)}/files`);
      const files = r.files || [];
      filesBody.replaceChildren(files.length
        ? h('ul', { class: 'plain tree' }, files.map((f) => h('li', { title: `sha256 ${f.sha256}` },
          h('a', { href: '#', class: 'file', dataset: { path: f.path }, title: 'History of this file',
            onclick: (e) => { e.preventDefault(); fileHist.open(f.path); } }, f.path),
          h('span', { class: 'muted' }, `v${f.version} · ${f.updated_by || '—'} · ${fmtAgo(f.updated_at)}`))))
        : h('div', { class: 'empty' }, 'No file yet.'));
    } catch (err) {
      filesBody.replaceChildren(h('div', { class: 'empty error' }, err.message));
    }
  }
  async function loadMembers() {
    try {
      const r = await api(`/resources/collaboration/${enc(taskId)}`);
      const members = r.members || [];
      membersBody.replaceChildren(members.length
        ? h('ul', { class: 'plain' }, members.map((m) => {
          const p = presence(m.last_active);
          return h('li', {}, h('span', { class: `status-${p}` }, m.agent_id), h('span', { class: 'muted' }, `${p} · ${fmtAgo(m.last_active)}`));
        }))
        : h('div', { class: 'empty' }, 'Nobody has joined.'));
    } catch (err) {
      membersBody.replaceChildren(h('div', { class: 'empty error' }, err.message));
    }
  }
  async function loadState() {
    try {
      const s = await api(`/resources/tasks/${enc(taskId)}/state`);
      document.getElementById('task-status').textContent = s.status;
    } catch (err) {
      document.getElementById('task-status').textContent = err.status === 404 ? 'no task row' : '?';
    }
  }
  function soon(fn) {
    clearTimeout(filesTimer);
    filesTimer = setTimeout(fn, 150);
  }

  // Drawing is batched once per frame, whatever the event rate: only the newest WINDOW rows
  // of a burst are built, and the DOM never holds more than WINDOW rows.
  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }
  function draw() {
    frame = 0;
    if (!pending.length) return;
    const empty = document.getElementById('timeline-empty');
    if (empty) empty.remove();
    const batch = pending.splice(0, pending.length).slice(-WINDOW);
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(eventRow(batch[i]));
    // Reading older events: keep them where they are on the screen. (Measured only then: a
    // layout read per frame is what a busy stream cannot afford.)
    const keep = follow ? null : [timeline.scrollHeight, timeline.scrollTop];
    timeline.prepend(frag);
    while (timeline.childElementCount > WINDOW) timeline.lastElementChild.remove();
    if (keep) timeline.scrollTop = keep[1] + (timeline.scrollHeight - keep[0]);
    drawCounts();
    drawLeases();
  }
  timeline.addEventListener('scroll', () => { follow = timeline.scrollTop < 8; });

  const stream = new TaskStream(taskId, (ev) => {
    counts.events++;
    if (ev.type === 'step_logged') counts.steps++;
    if (isConflict(ev)) counts.conflicts++;
    trackLease(ev);
    if (ev.type.startsWith('file_')) {
      soon(loadFiles);
      fileHist.changed(ev.data && ev.data.path);
    }
    if (ev.type === 'agent_joined' || ev.type === 'agent_left') loadMembers();
    if (ev.type.startsWith('task_')) loadState();
    pending.push(ev);
    if (pending.length > WINDOW * 4) pending.splice(0, pending.length - WINDOW);
    schedule();
  }, (state, text) => {
    setConn(state, text);
    if (state === 'live') loadLeases();
    if (state === 'closed') {
      timeline.replaceChildren(h('div', { class: 'empty error' }, `This task's events are not shown: ${text}`));
    }
  });

  drawCounts();
  drawLeases();
  loadState();
  loadFiles();
  loadMembers();
  stream.start();
  const tick = setInterval(() => { drawLeases(); }, 1000);
  const presenceTick = setInterval(loadMembers, 15000);
  return {
    stop() {
      stream.stop();
      clearInterval(tick);
      clearInterval(presenceTick);
      clearTimeout(filesTimer);
      fileHist.stop();
      if (frame) cancelAnimationFrame(frame);
    },
    follow() { follow = true; timeline.scrollTop = 0; },
  };
}

/**
 * The history panel of the task view: one file's revisions (file_history), newest first;
 * clicking one shows its content, ticking two shows the diff between them (file_revision).
 */
function fileHistory(taskId) {
  const titleEl = h('span', {}, 'History');
  const list = h('div', { class: 'body', id: 'history-list' });
  const shown = h('div', { class: 'body', id: 'revision' });
  const panel = h('div', { class: 'panel history', id: 'history', hidden: true },
    h('h2', {}, titleEl, h('span', { class: 'spacer' }),
      h('button', { type: 'button', title: 'Close the history', onclick: () => close() }, '×')),
    h('div', { class: 'split' }, list, shown));
  let path = null;
  let compare = []; // ticked versions, oldest tick first
  let timer = null;

  function close() {
    path = null;
    panel.hidden = true;
  }

  function open(p) {
    path = p;
    compare = [];
    panel.hidden = false;
    titleEl.replaceChildren('History of ', h('code', {}, p));
    shown.replaceChildren(h('div', { class: 'empty' }, 'Choose a version to see its content, or tick two to compare them.'));
    load();
  }

  async function load() {
    const p = path;
    let r;
    try {
      r = await tool('file_history', { task_id: taskId, path: p, limit: 200 });
    } catch (err) {
      if (p === path) list.replaceChildren(h('div', { class: 'empty error' }, err.message));
      return;
    }
    if (p !== path) return;
    const rows = (r.revisions || []).map((v) => h('tr', {
      tabindex: '0', dataset: { version: v.version }, onclick: () => showVersion(v.version),
    },
    h('td', {}, h('input', {
      type: 'checkbox', class: 'cmp', 'aria-label': `Compare version ${v.version}`,
      checked: compare.includes(v.version),
      onclick: (e) => e.stopPropagation(),
      onchange: (e) => tick(v.version, e.target.checked),
    })),
    h('td', { class: 'num' }, `v${v.version}`),
    h('td', {}, h('span', { class: `kind file_${v.op === 'write' ? 'written' : v.op === 'edit' ? 'edited' : 'deleted'}` }, v.op)),
    h('td', { class: 'who' }, v.agent_id || h('span', { class: 'muted' }, '—')),
    h('td', { title: v.created_at }, fmtTime(v.created_at)),
    h('td', { class: 'num muted' }, v.size === undefined ? '' : fmtBytes(v.size))));
    list.replaceChildren(h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', { class: 'num' }, 'Version'), h('th', {}, 'Op'),
        h('th', {}, 'Author'), h('th', {}, 'Time'), h('th', { class: 'num' }, 'Size'))),
      h('tbody', {}, rows)));
  }

  function tick(version, on) {
    compare = compare.filter((v) => v !== version);
    if (on) compare.push(version);
    while (compare.length > 2) {
      const dropped = compare.shift();
      const box = list.querySelector(`tr[data-version="${dropped}"] input.cmp`);
      if (box) box.checked = false;
    }
    if (compare.length === 2) showDiff(Math.min(...compare), Math.max(...compare));
  }

  function select(version) {
    for (const tr of list.querySelectorAll('tbody tr')) tr.classList.toggle('sel', tr.dataset.version === String(version));
  }

  async function showVersion(version) {
    const p = path;
    select(version);
    let r;
    try {
      r = await tool('file_revision', { task_id: taskId, path: p, version });
    } catch (err) {
      if (p === path) shown.replaceChildren(h('div', { class: 'empty error' }, err.message));
      return;
    }
    if (p !== path) return;
    shown.replaceChildren(
      h('div', { class: 'muted head' }, `v${r.version} · ${r.op} by ${r.agent_id || '—'} · ${fmtTime(r.created_at)}`
        + (r.size !== undefined ? ` · ${fmtBytes(r.size)}` : '')),
      r.content === null || r.content === undefined
        ? h('div', { class: 'empty' }, 'Deleted at this version: no content.')
        : h('pre', { class: 'content', id: 'revision-content' }, r.content));
  }

  async function showDiff(from, to) {
    const p = path;
    let r;
    try {
      r = await tool('file_revision', { task_id: taskId, path: p, version: to, diff_from: from });
    } catch (err) {
      if (p === path) shown.replaceChildren(h('div', { class: 'empty error' }, err.message));
      return;
    }
    if (p !== path) return;
    shown.replaceChildren(h('div', { class: 'muted head' }, `v${from} → v${to}`),
      r.diff ? diffBlock(r.diff) : h('div', { class: 'empty' }, 'No difference.'));
    const block = shown.querySelector('pre.diff');
    if (block) block.id = 'revision-diff';
  }

  return {
    panel,
    open,
    /** A file changed: refresh its list when it is the one shown. */
    changed(p) {
      if (!path || p !== path) return;
      clearTimeout(timer);
      timer = setTimeout(load, 150);
    },
    stop() { clearTimeout(timer); },
  };
}

// ---------------------------------------------------------------------------------------------
// Router, theme, keyboard

function route() {
  if (current) current.stop();
  setConn('', '');
  const root = document.getElementById('view');
  root.replaceChildren();
  const m = location.hash.match(/^#\/task\/(.+)$/);
  const view = m ? 'task' : location.hash === '#/agents' ? 'agents' : 'tasks';
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === view);
  if (m) {
    const id = decodeURIComponent(m[1]);
    document.title = `${id} · MCP Gateway`;
    current = taskView(root, id);
  } else if (view === 'agents') {
    document.title = 'Agents · MCP Gateway';
    current = agentsView(root);
  } else {
    document.title = 'Tasks · MCP Gateway';
    current = tasksView(root);
  }
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function setupChrome() {
  applyTheme(localStorage.getItem(THEME_KEY));
  document.getElementById('theme-btn').addEventListener('click', () => {
    const dark = document.documentElement.dataset.theme === 'dark'
      || (!document.documentElement.dataset.theme && matchMedia('(prefers-color-scheme: dark)').matches);
    const next = dark ? 'light' : 'dark';
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
  });
  const dlg = document.getElementById('token-dialog');
  document.getElementById('token-btn').addEventListener('click', () => askToken());
  dlg.addEventListener('close', () => {
    const input = document.getElementById('token-input');
    if (dlg.returnValue === 'save' && input.value.trim()) {
      Token.set(input.value.trim());
      route();
    } else if (dlg.returnValue === 'clear') {
      Token.clear();
      route();
    }
    input.value = '';
  });

  let pendingG = false;
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName) || document.querySelector('dialog[open]');
    if (typing) {
      if (e.key === 'Escape' && e.target.tagName === 'INPUT') e.target.blur();
      return;
    }
    if (e.metaKey || e.ctrlKey || e.altKey) return;
    if (pendingG) {
      pendingG = false;
      if (e.key === 't') { location.hash = '#/'; e.preventDefault(); }
      if (e.key === 'a') { location.hash = '#/agents'; e.preventDefault(); }
      return;
    }
    switch (e.key) {
      case 'g': pendingG = true; break;
      case '/': { const s = document.getElementById('list-search'); if (s) { s.focus(); e.preventDefault(); } break; }
      case '?': document.getElementById('help-dialog').showModal(); break;
      case 'Escape': if (location.hash.startsWith('#/task/')) location.hash = '#/'; break;
      case 'f': if (current && current.follow) current.follow(); break;
      case 'j': case 'k': moveSelection(e.key === 'j' ? 1 : -1); e.preventDefault(); break;
      case 'Enter': {
        const sel = document.querySelector('tbody tr.sel');
        if (sel && document.activeElement === document.body) sel.click();
        break;
      }
      default: break;
    }
  });
}

function moveSelection(delta) {
  const rows = [...document.querySelectorAll('tbody tr')];
  if (!rows.length) return;
  const i = rows.findIndex((r) => r.classList.contains('sel'));
  const next = rows[Math.max(0, Math.min(rows.length - 1, i < 0 ? 0 : i + delta))];
  rows.forEach((r) => r.classList.remove('sel'));
  next.classList.add('sel');
  next.focus();
}

document.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && e.target.tagName === 'TR') e.target.click();
});
window.addEventListener('hashchange', route);
setupChrome();
route();
