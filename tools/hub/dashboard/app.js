// The Lockstep fleet dashboard: plain JavaScript, no build step. Talks only to
// the operator API (docs/HUB.md §12) with the bearer token it was given in the
// URL fragment (#token=…: never sent to a server, kept in sessionStorage and
// removed from the address bar). Polls every 2 s; one page of the fleet at a
// time (100 rows), so 10,000 devices cost the browser what 100 do.
'use strict';

const PAGE_SIZE = 100;
const POLL_MS = 2000;
const state = { token: undefined, scope: 'read', offset: 0, total: 0, route: { page: 'fleet' }, chart: undefined, timer: undefined, busy: false };
const $ = (id) => document.getElementById(id);

function takeToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem('lockstep-token', decodeURIComponent(match[1]));
    history.replaceState(null, '', `${location.pathname}#/`);
  }
  return sessionStorage.getItem('lockstep-token') ?? undefined;
}

async function api(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${state.token}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body?.error?.message ?? `HTTP ${response.status}`);
    error.code = body?.error?.code;
    error.status = response.status;
    throw error;
  }
  return body;
}

function text(value) {
  return document.createTextNode(value === undefined || value === null ? '–' : String(value));
}

function cell(row, content, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.append(typeof content === 'object' && content !== null && content.nodeType ? content : text(content));
  row.append(td);
  return td;
}

function ago(ms) {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

const STATUS_TEXT = { ok: 'in sync', pending: 'rotating', outOfSync: 'out of sync', offline: 'offline' };

function route() {
  const match = /^#\/device\/([0-9a-fA-F]{16})$/.exec(location.hash);
  state.route = match ? { page: 'device', id: match[1].toLowerCase() } : { page: 'fleet' };
  $('fleet-view').hidden = state.route.page !== 'fleet';
  $('device-view').hidden = state.route.page !== 'device';
  $('device-message').textContent = '';
  void refresh();
}

function fleetQuery() {
  const params = new URLSearchParams({ offset: String(state.offset), limit: String(PAGE_SIZE), filter: $('filter').value });
  const older = $('pending-older').value;
  if (older !== '' && Number(older) >= 0) params.set('pendingOlderThanMs', String(Math.round(Number(older) * 1000)));
  const q = $('search').value.trim();
  if (/^[0-9a-fA-F]{1,16}$/.test(q)) params.set('q', q);
  return params;
}

async function refreshFleet() {
  const [list, rate, recovery] = await Promise.all([api(`/api/v1/devices?${fleetQuery()}`), api('/api/v1/rotations/rate'), api('/api/v1/recovery?limit=20')]);
  for (const [name, value] of Object.entries(list.fleet)) {
    const element = $(`count-${name}`);
    if (element) element.textContent = value.toLocaleString('en');
  }
  state.total = list.total;
  if (state.offset >= list.total && list.total > 0) state.offset = Math.floor((list.total - 1) / PAGE_SIZE) * PAGE_SIZE;
  const first = list.total === 0 ? 0 : list.offset + 1;
  $('page-info').textContent = `${first.toLocaleString('en')}–${(list.offset + list.devices.length).toLocaleString('en')} of ${list.total.toLocaleString('en')}`;
  $('prev').disabled = list.offset === 0;
  $('next').disabled = list.offset + list.devices.length >= list.total;
  const rows = document.createDocumentFragment();
  for (const d of list.devices) {
    const tr = document.createElement('tr');
    tr.dataset.device = d.deviceId;
    const link = document.createElement('a');
    link.href = `#/device/${d.deviceId}`;
    link.textContent = d.deviceId;
    cell(tr, link, 'id');
    cell(tr, d.mode);
    cell(tr, d.activeKeyId, 'num active-key');
    cell(tr, d.pendingKeyId, 'num');
    cell(tr, d.connection);
    cell(tr, d.connection === 'online' ? 'now' : ago(d.lastSeenAt));
    cell(tr, ago(d.activeSince));
    cell(tr, d.rotations, 'num');
    cell(tr, STATUS_TEXT[d.status] ?? d.status, `status-${d.status}`);
    const actions = cell(tr, '', 'admin-only');
    actions.textContent = '';
    const rotate = document.createElement('button');
    rotate.type = 'button';
    rotate.textContent = 'Rotate';
    rotate.dataset.rotate = d.deviceId;
    actions.append(rotate);
    rows.append(tr);
  }
  $('device-rows').replaceChildren(rows);
  drawChart(rate);
  renderRecovery(recovery);
}

// Issue 14 (docs/HUB.md §13): pending approvals and recent recoveries.
function renderRecovery(recovery) {
  const p = recovery.policy;
  $('recovery-policy').textContent = `policy ${p.mode} · at most ${p.perDeviceLimit} per device per ${Math.round(p.windowSeconds / 60)} min · hub static key ${p.hubStaticId ?? 'none'}`;
  const requests = document.createDocumentFragment();
  for (const r of recovery.requests) {
    const tr = document.createElement('tr');
    tr.dataset.device = r.deviceId;
    cell(tr, r.deviceId, 'id');
    cell(tr, ago(r.firstAt));
    cell(tr, ago(r.lastAt));
    cell(tr, r.attempts, 'num');
    cell(tr, r.claimedFuture ? `${r.claimedActive} + ${r.claimedFuture}` : r.claimedActive, 'num');
    cell(tr, r.newKeyId, 'num');
    cell(tr, r.approvedAt === null ? 'no' : `by ${r.approvedBy} ${ago(r.approvedAt)}`);
    const actions = cell(tr, '', 'admin-only');
    actions.textContent = '';
    if (r.approvedAt === null) {
      const approve = document.createElement('button');
      approve.type = 'button';
      approve.textContent = 'Approve';
      approve.dataset.approve = r.deviceId;
      actions.append(approve);
    }
    requests.append(tr);
  }
  $('recovery-request-rows').replaceChildren(requests);
  const recent = document.createDocumentFragment();
  for (const r of recovery.recent) {
    const tr = document.createElement('tr');
    tr.dataset.device = r.deviceId;
    cell(tr, r.deviceId, 'id');
    cell(tr, ago(r.at));
    cell(tr, r.newKeyId, 'num');
    recent.append(tr);
  }
  $('recovery-recent-rows').replaceChildren(recent);
}

async function approveRecovery(deviceId) {
  const where = $('recovery-message');
  try {
    const result = await api(`/api/v1/devices/${deviceId}/recovery/approve`, { method: 'POST', body: '{}' });
    where.textContent = `recovery of ${deviceId} ${result.outcome}: its next attempt is accepted`;
  } catch (error) {
    where.textContent = `approve ${deviceId}: ${error.code ?? ''} ${error.message}`;
  }
  await refresh();
}

function drawChart(rate) {
  const perMinute = 60_000 / rate.bucketMs;
  const xs = rate.buckets.map((b) => b.t / 1000);
  const ys = rate.buckets.map((b) => b.confirmed * perMinute);
  const data = [xs, ys];
  if (state.chart === undefined && typeof uPlot === 'function') {
    const box = $('rate-chart');
    state.chart = new uPlot(
      {
        width: Math.max(320, box.clientWidth || 800),
        height: 160,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
        series: [{}, { label: 'rotations / min', stroke: '#2563eb', fill: 'rgba(37, 99, 235, 0.12)', width: 2 }],
        axes: [{}, { label: 'per minute' }],
        legend: { show: true },
      },
      data,
      box,
    );
  } else if (state.chart !== undefined) {
    state.chart.setData(data);
  }
}

async function refreshDevice() {
  const id = state.route.id;
  const { device, history } = await api(`/api/v1/devices/${id}`);
  $('device-id').textContent = device.deviceId;
  const fields = [
    ['Status', STATUS_TEXT[device.status] ?? device.status],
    ['Rekey mode', device.mode],
    ['Active key id', device.activeKeyId],
    ['Pending key id', device.pendingKeyId ?? '–'],
    ['Pending since', device.pendingSince === null ? '–' : ago(device.pendingSince)],
    ['Connection', device.connection],
    ['Last seen', device.connection === 'online' ? 'now (connected)' : ago(device.lastSeenAt)],
    ['Last rotation', ago(device.activeSince)],
    ['Rotations', device.rotations],
    ['Provisioned', device.createdAt === null ? '–' : new Date(device.createdAt).toISOString()],
    ['Last rejected frame', device.lastRejection === null ? '–' : `${device.lastRejection.code}, ${ago(device.lastRejection.at)}`],
  ];
  const list = document.createDocumentFragment();
  for (const [name, value] of fields) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = String(value);
    if (name === 'Active key id') dd.dataset.testid = 'device-active-key';
    list.append(dt, dd);
  }
  $('device-details').replaceChildren(list);
  const rows = document.createDocumentFragment();
  for (const entry of history) {
    const tr = document.createElement('tr');
    cell(tr, entry.seq, 'num');
    cell(tr, new Date(entry.at).toISOString().replace('T', ' ').slice(0, 19));
    cell(tr, entry.actor);
    cell(tr, entry.action);
    cell(tr, entry.outcome);
    cell(tr, entry.detail ? Object.entries(entry.detail).map(([k, v]) => `${k}=${v}`).join(' ') : '');
    rows.append(tr);
  }
  $('history-rows').replaceChildren(rows);
}

async function refresh() {
  if (state.token === undefined || state.busy) return;
  state.busy = true;
  try {
    if (state.route.page === 'device') await refreshDevice();
    else await refreshFleet();
    $('hub-state').textContent = `hub up · updated ${new Date().toLocaleTimeString()}`;
    $('hub-state').classList.remove('down');
  } catch (error) {
    if (error.status === 401) return logout('The token was refused.');
    if (state.route.page === 'device' && error.status === 404) $('device-message').textContent = error.message;
    $('hub-state').textContent = `hub unreachable (${error.message}); retrying`;
    $('hub-state').classList.add('down');
  } finally {
    state.busy = false;
  }
}

async function rotate(deviceId, where) {
  where.textContent = `rotating ${deviceId}…`;
  try {
    const result = await api(`/api/v1/devices/${deviceId}/rotate`, { method: 'POST' });
    where.textContent = `rotation ${result.outcome} for ${deviceId}`;
  } catch (error) {
    where.textContent = `rotate ${deviceId}: ${error.code ?? ''} ${error.message}`;
  }
  await refresh();
}

function logout(message) {
  sessionStorage.removeItem('lockstep-token');
  state.token = undefined;
  $('login').hidden = false;
  $('fleet-view').hidden = true;
  $('device-view').hidden = true;
  $('hub-state').textContent = message;
}

async function start() {
  state.token = takeToken();
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem('lockstep-token', $('token-input').value.trim());
    location.reload();
  });
  if (state.token === undefined) return logout('no token');
  try {
    const session = await api('/api/v1/session');
    state.scope = session.scope;
    $('session').textContent = `token ${session.tokenId} (${session.scope})`;
    document.body.classList.toggle('admin', session.scope === 'admin');
  } catch (error) {
    return logout(error.status === 401 ? 'The token was refused.' : `hub unreachable: ${error.message}`);
  }
  for (const id of ['filter', 'pending-older', 'search']) {
    $(id).addEventListener('input', () => {
      state.offset = 0;
      void refresh();
    });
  }
  $('filters').addEventListener('submit', (event) => event.preventDefault());
  $('prev').addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    void refresh();
  });
  $('next').addEventListener('click', () => {
    if (state.offset + PAGE_SIZE < state.total) state.offset += PAGE_SIZE;
    void refresh();
  });
  $('device-rows').addEventListener('click', (event) => {
    const id = event.target?.dataset?.rotate;
    if (id) void rotate(id, $('hub-state'));
  });
  $('recovery-request-rows').addEventListener('click', (event) => {
    const id = event.target?.dataset?.approve;
    if (id) void approveRecovery(id);
  });
  $('device-rotate').addEventListener('click', () => void rotate(state.route.id, $('device-message')));
  $('device-revoke').addEventListener('click', async () => {
    const id = state.route.id;
    if (!confirm(`Revoke ${id}? Its keys are erased and it can never connect again.`)) return;
    try {
      const revocation = await api(`/api/v1/devices/${id}/revoke`, { method: 'POST', body: JSON.stringify({ reason: 'revoked from the dashboard' }) });
      $('device-message').textContent = `revoked by ${revocation.actor}; last key id ${revocation.lastKeyId}`;
    } catch (error) {
      $('device-message').textContent = `revoke: ${error.code ?? ''} ${error.message}`;
    }
  });
  window.addEventListener('hashchange', route);
  route();
  state.timer = setInterval(() => void refresh(), POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => void start());
