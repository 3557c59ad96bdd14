// GoMon console: plain JavaScript over GoMon's JSON API, no build step and no dependency.
//
// Every value shown comes from the API and is untrusted: it only ever reaches the page as text (`textContent`,
// attribute values), never as HTML. The API token (when the service has tokens) is kept in this tab's
// sessionStorage and sent as `Authorization: Bearer`; there is no cookie, so no request can be forged from
// another site.
'use strict';

(function () {
  const TOKEN_KEY = 'gomon.token';
  const THEME_KEY = 'gomon.theme';
  const PAGE_SIZE = 50;
  const REFRESH_MS = 2000;
  const SEVERITIES = ['P1', 'P2', 'P3', 'P4'];
  const ACCESS = ['read', 'ingest', 'operate', 'admin'];

  let session = null; // what GET /api/v1/console answered: caller, version, links, hosts
  let timer = null; // the current page's refresh
  let generation = 0; // bumped on every navigation; a stale refresh sees it changed and stops

  // ---- DOM helpers: elements are built with text only ----

  /** An element: `attrs` are attributes (`on*` functions become listeners), children are nodes or text. */
  function h(tag, attrs, ...children) {
    const svg = tag.startsWith('svg:');
    const el = svg
      ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith('on') && typeof value === 'function') {
        el.addEventListener(name.slice(2), value);
      } else if (name === 'style' || name === 'innerHTML') {
        throw new Error('not allowed: ' + name);
      } else {
        el.setAttribute(name, value === true ? '' : String(value));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** Replaces the children of `el`, keeping the keyboard focus on the same link, button or field if it was there. */
  function replace(el, ...children) {
    const focused = document.activeElement;
    const had = focused && focused !== el && el.contains(focused) ? identity(focused) : null;
    el.replaceChildren();
    append(el, children);
    if (had) {
      const again = [...el.querySelectorAll(focused.tagName)].find((candidate) => identity(candidate) === had);
      if (again) again.focus();
    }
  }

  /** What tells a focusable element from its neighbours across a redraw. */
  function identity(el) {
    return [el.tagName, el.id, el.getAttribute('href'), el.getAttribute('name'), el.textContent].join('\u0000');
  }

  const main = () => document.getElementById('main');

  function flash(message, ok) {
    const box = document.getElementById('flash');
    box.className = ok ? 'ok' : '';
    box.textContent = message || '';
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Calls the API; answers the parsed JSON, or throws an ApiError whose message is the API's own words. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (error) {
      throw new ApiError(0, 'GoMon cannot be reached: ' + error.message);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const said = data && typeof data.error === 'string' ? data.error : text.slice(0, 200);
      throw new ApiError(response.status, describe(response.status, said));
    }
    return data;
  }

  function describe(status, said) {
    const what = {
      401: 'Not signed in, or the token is not accepted',
      403: 'Your token may not do this',
      404: 'Not found',
      409: 'Conflict',
      503: 'A dependency is unavailable; try again shortly',
    }[status];
    return (what ? what + ': ' : 'Error ' + status + ': ') + (said || '');
  }

  function can(access) {
    return session && ACCESS.indexOf(session.caller.access) >= ACCESS.indexOf(access);
  }

  // ---- formatting ----

  function ago(iso) {
    if (!iso) return '';
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return duration(seconds);
  }

  function duration(seconds) {
    if (seconds < 60) return Math.floor(seconds) + ' s';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min';
    if (seconds < 86400) return Math.floor(seconds / 3600) + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
    return Math.floor(seconds / 86400) + ' d ' + Math.floor((seconds % 86400) / 3600) + ' h';
  }

  function when(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    return h('time', { datetime: iso, title: iso }, date.toLocaleString());
  }

  function age(alert) {
    if (alert.status === 'firing') return 'firing for ' + ago(alert.created_at);
    if (alert.status === 'acknowledged') {
      return 'acknowledged ' + ago(alert.acknowledged_at) + ' ago' + (alert.acknowledged_by ? ' by ' + alert.acknowledged_by : '');
    }
    const lasted = alert.resolved_at ? (Date.parse(alert.resolved_at) - Date.parse(alert.created_at)) / 1000 : 0;
    return 'resolved ' + ago(alert.resolved_at) + ' ago, after ' + duration(lasted);
  }

  const sev = (severity) => h('span', { class: 'sev sev-' + severity, title: 'severity ' + severity }, severity);
  const state = (name) => h('span', { class: 'state state-' + String(name).replace(/[^a-z-]/g, '') }, name);

  function number(value, digits) {
    return value === null || value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);
  }

  function bytes(value) {
    if (value === null || value === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (value >= 1024 && i < units.length - 1) {
      value /= 1024;
      i += 1;
    }
    return value.toFixed(i === 0 ? 0 : 1) + ' ' + units[i];
  }

  // ---- routing: #/section/id?query ----

  function route() {
    const hash = location.hash.replace(/^#/, '') || '/alerts';
    const [path, query] = hash.split('?');
    const parts = path.split('/').filter(Boolean);
    return { parts, params: new URLSearchParams(query || '') };
  }

  let carried = null; // a message for the page `go` opens

  /** Opens `path?params`; `message`, if given, is shown on that page. */
  function go(path, params, message) {
    carried = message || null;
    const query = params && params.toString();
    location.hash = '#' + path + (query ? '?' + query : '');
  }

  async function render() {
    generation += 1;
    clearTimeout(timer);
    const { parts, params } = route();
    const section = parts[0] || 'alerts';
    for (const link of document.querySelectorAll('.top nav a')) {
      if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (!session) {
      try {
        session = await api('GET', '/api/v1/console');
      } catch (error) {
        if (error.status === 401) return login();
        replace(main(), h('h1', {}, 'GoMon'), h('p', {}, error.message));
        timer = setTimeout(render, 5000);
        return;
      }
      showSession();
    }
    const pages = {
      alerts: () => (parts[1] ? alertPage(parts[1]) : alertsPage(params)),
      silences: () => (parts[1] === 'new' ? newSilencePage(params) : silencesPage(params)),
      notifications: () => notificationsPage(params),
      hosts: () => hostsPage(),
      status: () => statusPage(),
    };
    const page = pages[section] || (() => replace(main(), h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/alerts' }, 'Alerts'))));
    try {
      await page();
    } catch (error) {
      if (error.status === 401) return login();
      replace(main(), h('h1', {}, 'Something went wrong'), h('p', {}, error.message));
    }
  }

  /** Runs `refresh` every `period` ms while this page is shown and the tab visible. */
  function every(refresh, period = REFRESH_MS) {
    const mine = generation;
    const tick = async () => {
      if (mine !== generation) return;
      if (document.visibilityState === 'visible') {
        try {
          await refresh();
        } catch (error) {
          if (mine === generation) flash(error.message);
        }
      }
      if (mine === generation) timer = setTimeout(tick, period);
    };
    timer = setTimeout(tick, period);
  }

  function showSession() {
    const who = document.getElementById('who');
    const name = session.caller.name;
    who.textContent = (name ? name : 'anonymous') + ' (' + session.caller.access + ')';
    document.getElementById('signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  // ---- sign-in ----

  function login() {
    session = null;
    document.getElementById('who').textContent = '';
    const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true });
    const form = h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        try {
          session = await api('GET', '/api/v1/console');
        } catch (error) {
          sessionStorage.removeItem(TOKEN_KEY);
          flash(error.status === 401 ? 'That token is not accepted.' : error.message);
          return;
        }
        showSession();
        render();
      },
    },
    h('label', { for: 'token' }, 'API token', input),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
    replace(main(), h('section', { class: 'login' },
      h('h1', {}, 'Sign in'),
      h('p', {}, 'This GoMon asks for an API token (alerting.auth). The console shows what the token\'s role allows.'),
      form));
    input.focus();
  }

  // ---- alerts ----

  const ALERT_FILTERS = ['status', 'severity', 'namespace', 'source', 'label', 'q'];

  async function alertsPage(params) {
    const page = Math.max(1, parseInt(params.get('page') || '1', 10) || 1);
    const counts = h('div', { class: 'counts', 'aria-label': 'Open alerts by status and severity' });
    const body = h('tbody');
    const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
    const pager = h('div', { class: 'pager' });
    const form = filterForm(params);
    replace(main(),
      h('h1', {}, 'Alerts'),
      counts,
      form,
      summary,
      h('table', { id: 'alerts' },
        h('caption', { class: 'skip' }, 'Alerts, newest first'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Severity'),
          h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, 'Title'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Namespace'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Source'),
          h('th', { scope: 'col' }, 'Age'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Assigned to'))),
        body),
      pager);
    const refresh = async () => {
      const query = new URLSearchParams();
      for (const key of ALERT_FILTERS) {
        const value = params.get(key);
        if (!value) continue;
        if (key === 'label') {
          for (const pair of value.split(',').map((s) => s.trim()).filter(Boolean)) query.append('label', pair);
        } else {
          query.set(key, value);
        }
      }
      query.set('limit', String(PAGE_SIZE));
      query.set('offset', String((page - 1) * PAGE_SIZE));
      const [list, open] = await Promise.all([
        api('GET', '/api/v1/alerts?' + query),
        api('GET', '/api/v1/alerts/summary'),
      ]);
      renderCounts(counts, open, params);
      renderAlertRows(body, list.alerts);
      const first = list.total === 0 ? 0 : (page - 1) * PAGE_SIZE + 1;
      const last = (page - 1) * PAGE_SIZE + list.alerts.length;
      summary.textContent = list.total === 0 ? 'No alert matches.' : first + '–' + last + ' of ' + list.total;
      renderPager(pager, params, page, list.total);
    };
    await refresh();
    every(refresh);
  }

  function filterForm(params) {
    const field = (name, label, input) => h('label', { for: 'f-' + name }, label, input);
    const select = (name, options) => h('select', { id: 'f-' + name, name },
      h('option', { value: '' }, 'any'),
      options.map((value) => h('option', { value, selected: params.get(name) === value }, value)));
    const text = (name, placeholder) => h('input', { id: 'f-' + name, name, value: params.get(name) || '', placeholder, maxlength: 200 });
    return h('form', {
      class: 'filters',
      role: 'search',
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        for (const [key, value] of new FormData(event.target)) if (String(value).trim()) next.set(key, String(value).trim());
        go('/alerts', next);
      },
    },
    field('status', 'Status', select('status', ['firing', 'acknowledged', 'resolved'])),
    field('severity', 'Severity', select('severity', SEVERITIES)),
    field('namespace', 'Namespace', text('namespace', 'payments')),
    field('source', 'Source', text('source', 'kubernetes')),
    field('label', 'Label k=v', text('label', 'team=db')),
    field('q', 'Title contains', text('q', 'disk')),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
    h('button', { type: 'button', onclick: () => go('/alerts') }, 'Clear'));
  }

  function renderCounts(box, open, params) {
    const chips = [];
    for (const status of ['firing', 'acknowledged']) {
      const bySeverity = open[status] || {};
      const total = SEVERITIES.reduce((sum, s) => sum + (bySeverity[s] || 0), 0);
      const link = new URLSearchParams({ status });
      chips.push(h('a', { class: 'count', href: '#/alerts?' + link, 'data-count': status }, state(status), h('b', {}, total)));
      for (const severity of SEVERITIES) {
        const n = bySeverity[severity] || 0;
        if (!n) continue;
        const filter = new URLSearchParams({ status, severity });
        chips.push(h('a', { class: 'count', href: '#/alerts?' + filter, 'aria-label': n + ' ' + status + ' ' + severity }, sev(severity), h('b', {}, n)));
      }
    }
    replace(box, chips);
  }

  let drawn = false; // the first list drawn is marked, for scripts/bench-console.sh

  function renderAlertRows(body, alerts) {
    if (!drawn) {
      drawn = true;
      queueMicrotask(() => performance.mark('gomon:alerts-drawn'));
    }
    if (alerts.length === 0) {
      replace(body, h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No alerts.')));
      return;
    }
    replace(body, alerts.map((alert) => h('tr', { 'data-id': alert.id },
      h('td', {}, sev(alert.severity)),
      h('td', {}, state(alert.status)),
      h('td', { class: 'title' }, h('a', { href: '#/alerts/' + encodeURIComponent(alert.id) }, alert.title)),
      h('td', { class: 'hide-narrow' }, alert.namespace || ''),
      h('td', { class: 'hide-narrow' }, alert.source),
      h('td', {}, age(alert)),
      h('td', { class: 'hide-narrow' }, alert.assigned_to || ''))));
  }

  function renderPager(box, params, page, total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const to = (n) => {
      const next = new URLSearchParams(params);
      next.set('page', String(n));
      return '#/alerts?' + next;
    };
    replace(box,
      page > 1 ? h('a', { href: to(page - 1), rel: 'prev' }, '← Newer') : null,
      h('span', { class: 'muted' }, 'Page ' + page + ' of ' + pages),
      page < pages ? h('a', { href: to(page + 1), rel: 'next' }, 'Older →') : null);
  }

  // ---- one alert ----

  async function alertPage(id) {
    const view = h('div');
    replace(main(), view);
    const refresh = async () => {
      const [alert, actions, notifications, silences] = await Promise.all([
        api('GET', '/api/v1/alerts/' + encodeURIComponent(id)),
        api('GET', '/api/v1/alerts/' + encodeURIComponent(id) + '/actions'),
        api('GET', '/api/v1/notifications?alert_id=' + encodeURIComponent(id) + '&limit=100'),
        api('GET', '/api/v1/alerts/' + encodeURIComponent(id) + '/silences'),
      ]);
      // Keep what the person is typing: only redraw when nothing in the view has focus.
      if (view.contains(document.activeElement) && document.activeElement.tagName === 'INPUT') return;
      replace(view, alertView(alert, actions.actions, notifications.notifications, silences));
    };
    await refresh();
    every(refresh);
  }

  function alertView(alert, actions, notifications, silences) {
    const links = [];
    const jaeger = session.links && session.links.jaeger_url;
    if (jaeger && alert.jaeger_trace_id) {
      links.push(h('a', { href: jaeger.replace(/\/+$/, '') + '/trace/' + encodeURIComponent(alert.jaeger_trace_id), rel: 'noopener noreferrer' }, 'Trace'));
    }
    const grafana = session.links && session.links.grafana_url;
    if (grafana) links.push(h('a', { href: grafana, rel: 'noopener noreferrer' }, 'Grafana'));
    const row = (name, value) => (value === null || value === undefined || value === '' ? null : [h('dt', {}, name), h('dd', {}, value)]);
    return [
      h('p', {}, h('a', { href: '#/alerts' }, '← Alerts')),
      h('h1', { id: 'alert-title' }, sev(alert.severity), ' ', alert.title),
      h('p', {}, state(alert.status), ' · ', age(alert), links.length ? [' · ', links.map((l, i) => [i ? ' · ' : '', l])] : null),
      alertActions(alert),
      h('div', { class: 'grid2' },
        h('section', { class: 'panel', 'aria-labelledby': 'fields-h' },
          h('h2', { id: 'fields-h' }, 'Fields'),
          h('dl', { class: 'fields' },
            row('Id', h('span', { class: 'mono' }, alert.id)),
            row('Status', alert.status),
            row('Severity', alert.severity),
            row('Source', alert.source),
            row('Namespace', alert.namespace),
            row('Description', alert.description),
            row('Created', when(alert.created_at)),
            row('Updated', when(alert.updated_at)),
            row('Acknowledged', alert.acknowledged_at ? [when(alert.acknowledged_at), alert.acknowledged_by ? ' by ' + alert.acknowledged_by : ''] : null),
            row('Resolved', alert.resolved_at ? when(alert.resolved_at) : null),
            row('Ends', alert.ends_at ? when(alert.ends_at) : null),
            row('Assigned to', alert.assigned_to),
            row('Incident', alert.incident_id),
            row('Trace id', alert.jaeger_trace_id ? h('span', { class: 'mono' }, alert.jaeger_trace_id) : null),
            row('Fingerprint', h('span', { class: 'mono' }, alert.fingerprint)))),
        h('section', { class: 'panel', 'aria-labelledby': 'labels-h' },
          h('h2', { id: 'labels-h' }, 'Labels'),
          pairs(alert.labels),
          h('h2', {}, 'Annotations'),
          pairs(alert.annotations))),
      h('div', { class: 'grid2' },
        h('section', { class: 'panel', 'aria-labelledby': 'audit-h' },
          h('h2', { id: 'audit-h' }, 'Audit trail'),
          h('ol', { class: 'timeline', id: 'audit' }, actions.map(auditItem))),
        h('section', { class: 'panel', 'aria-labelledby': 'notif-h' },
          h('h2', { id: 'notif-h' }, 'Notifications'),
          notificationTable(notifications, false),
          h('h2', {}, 'Silences that match'),
          silences.length ? h('ul', {}, silences.map((s) => h('li', {}, state(s.status.state), ' ', h('a', { href: '#/silences?id=' + encodeURIComponent(s.id) }, matcherText(s.matchers)), ' until ', when(s.endsAt)))) : h('p', { class: 'muted' }, 'None.'))),
    ];
  }

  function pairs(map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return h('p', { class: 'muted' }, 'None.');
    return h('table', {}, h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', class: 'mono' }, k), h('td', { class: 'mono' }, v)))));
  }

  function auditItem(entry) {
    const details = entry.details || {};
    const extra = [];
    if (details.on_behalf_of) extra.push('on behalf of ' + details.on_behalf_of);
    if (details.assigned_to) extra.push('to ' + details.assigned_to);
    if (details.note) extra.push('“' + details.note + '”');
    if (entry.action === 'repeated' && details.receiver) {
      extra.push('reminder ' + details.repeat + ' to ' + details.receiver);
    }
    if (entry.action === 'escalated' && Array.isArray(details.receivers)) {
      extra.push('to ' + details.receivers.join(', ') + (details.after ? ', unacknowledged after ' + details.after : ''));
    }
    return h('li', { 'data-action': entry.action },
      when(entry.created_at),
      h('strong', {}, entry.action), ' by ', h('span', { class: 'actor' }, entry.actor || 'unknown'),
      extra.length ? ' · ' + extra.join(' · ') : '');
  }

  function alertActions(alert) {
    if (!can('operate')) {
      return h('p', { class: 'muted', id: 'read-only' }, 'Read-only: your token cannot change alerts.');
    }
    const act = (label, method, path, body, klass) => h('button', {
      type: 'button',
      class: klass || '',
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api(method, '/api/v1/alerts/' + encodeURIComponent(alert.id) + path, body);
          flash(label + ': done.', true);
          render();
        } catch (error) {
          flash(error.message);
          event.target.disabled = false;
        }
      },
    }, label);
    const assignee = h('input', { id: 'assignee', name: 'assigned_to', required: true, maxlength: 100, value: alert.assigned_to || '' });
    const assign = h('form', {
      class: 'actions',
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api('PUT', '/api/v1/alerts/' + encodeURIComponent(alert.id) + '/assign', { assigned_to: assignee.value.trim() });
          flash('Assigned to ' + assignee.value.trim() + '.', true);
          assignee.blur();
          render();
        } catch (error) {
          flash(error.message);
        }
      },
    }, h('label', { for: 'assignee' }, 'Assign to', assignee), h('button', { type: 'submit' }, 'Assign'));
    const silence = new URLSearchParams({ alert: alert.id });
    return h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' },
      alert.status === 'firing' ? act('Acknowledge', 'PUT', '/acknowledge', {}, 'primary') : null,
      alert.status !== 'resolved' ? act('Resolve', 'PUT', '/resolve', {}) : null,
      alert.status !== 'resolved' ? assign : null,
      h('a', { href: '#/silences/new?' + silence }, 'Silence this…'),
      can('admin') ? h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          if (!window.confirm('Delete this alert and its history?')) return;
          try {
            await api('DELETE', '/api/v1/alerts/' + encodeURIComponent(alert.id));
            go('/alerts', null, 'Alert deleted.');
          } catch (error) {
            flash(error.message);
          }
        },
      }, 'Delete') : null);
  }

  // ---- silences ----

  function matcherText(matchers) {
    return '{' + matchers.map((m) => m.name + (m.isEqual === false ? (m.isRegex ? '!~' : '!=') : (m.isRegex ? '=~' : '=')) + JSON.stringify(m.value)).join(', ') + '}';
  }

  async function silencesPage(params) {
    const view = h('div');
    replace(main(), h('h1', {}, 'Silences'),
      can('operate') ? h('p', {}, h('a', { href: '#/silences/new' }, 'New silence')) : null,
      view);
    const refresh = async () => {
      const silences = await api('GET', '/api/v2/silences');
      const only = params.get('id');
      const groups = { active: [], pending: [], expired: [] };
      for (const silence of silences) {
        if (only && silence.id !== only) continue;
        (groups[silence.status.state] || groups.expired).push(silence);
      }
      replace(view, Object.entries(groups).map(([name, list]) => h('section', { 'aria-labelledby': 'sil-' + name },
        h('h2', { id: 'sil-' + name }, name[0].toUpperCase() + name.slice(1) + ' (' + list.length + ')'),
        list.length ? h('table', {}, h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Matchers'), h('th', { scope: 'col' }, 'Starts'), h('th', { scope: 'col' }, 'Ends'),
          h('th', { scope: 'col' }, 'Created by'), h('th', { scope: 'col' }, 'Comment'), h('th', { scope: 'col' }, ''))),
        h('tbody', {}, list.map(silenceRow))) : h('p', { class: 'muted' }, 'None.'))));
    };
    await refresh();
    every(refresh);
  }

  function silenceRow(silence) {
    const expire = silence.status.state !== 'expired' && can('operate')
      ? h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          try {
            await api('DELETE', '/api/v2/silence/' + encodeURIComponent(silence.id));
            flash('Silence expired.', true);
            render();
          } catch (error) {
            flash(error.message);
          }
        },
      }, 'Expire')
      : null;
    return h('tr', { 'data-id': silence.id },
      h('td', { class: 'mono' }, matcherText(silence.matchers)),
      h('td', {}, when(silence.startsAt)),
      h('td', {}, when(silence.endsAt)),
      h('td', {}, silence.createdBy),
      h('td', {}, silence.comment),
      h('td', {}, expire));
  }

  async function newSilencePage(params) {
    if (!can('operate')) {
      replace(main(), h('h1', {}, 'New silence'), h('p', {}, 'Your token may not create silences.'));
      return;
    }
    let initial = [{ name: '', value: '', op: '=' }];
    const from = params.get('alert');
    if (from) {
      const alert = await api('GET', '/api/v1/alerts/' + encodeURIComponent(from));
      const labels = Object.assign({}, alert.labels);
      if (!labels.alertname) labels.alertname = alert.title;
      initial = Object.entries(labels).map(([name, value]) => ({ name, value, op: '=' }));
    }
    const rows = h('div', { id: 'matchers' });
    const preview = h('div', { 'aria-live': 'polite', id: 'preview' });
    let previewTimer = null;
    const addRow = (matcher) => {
      const n = rows.children.length;
      const name = h('input', { name: 'name', id: 'm-name-' + n, value: matcher.name, required: true, maxlength: 100 });
      const op = h('select', { name: 'op', id: 'm-op-' + n }, ['=', '!=', '=~', '!~'].map((o) => h('option', { value: o, selected: o === matcher.op }, o)));
      const value = h('input', { name: 'value', id: 'm-value-' + n, value: matcher.value, maxlength: 1000 });
      const row = h('div', { class: 'matcher' },
        h('label', { for: name.id }, 'Label', name),
        h('label', { for: op.id }, 'Match', op),
        h('label', { for: value.id }, 'Value', value),
        h('button', { type: 'button', 'aria-label': 'Remove matcher', onclick: () => { row.remove(); schedule(); } }, '✕'));
      rows.append(row);
    };
    const matchers = () => [...rows.querySelectorAll('.matcher')].map((row) => {
      const op = row.querySelector('select').value;
      return {
        name: row.querySelector('input[name=name]').value.trim(),
        value: row.querySelector('input[name=value]').value,
        isRegex: op.includes('~'),
        isEqual: !op.startsWith('!'),
      };
    }).filter((m) => m.name);
    const schedule = () => {
      clearTimeout(previewTimer);
      previewTimer = setTimeout(showPreview, 300);
    };
    const showPreview = async () => {
      const list = matchers();
      if (!list.length) {
        replace(preview, h('p', { class: 'muted' }, 'Add a matcher to see which open alerts it mutes.'));
        return;
      }
      const query = new URLSearchParams();
      for (const m of list) query.append('filter', matcherText([m]).slice(1, -1));
      try {
        const alerts = await api('GET', '/api/v2/alerts?' + query);
        replace(preview,
          h('p', {}, h('strong', {}, alerts.length), alerts.length === 1 ? ' open alert would be muted' : ' open alerts would be muted'),
          h('ul', {}, alerts.slice(0, 20).map((a) => h('li', {}, sev(a.labels.severity || ''), ' ', a.labels.alertname || a.fingerprint))));
      } catch (error) {
        replace(preview, h('p', {}, error.message));
      }
    };
    initial.forEach(addRow);
    rows.addEventListener('input', schedule);
    rows.addEventListener('change', schedule);
    const hours = h('input', { id: 'duration', name: 'duration', type: 'number', min: '0.1', step: '0.1', value: '2', required: true });
    const by = h('input', { id: 'created-by', name: 'createdBy', value: session.caller.name || '', required: true, maxlength: 100 });
    const comment = h('textarea', { id: 'comment', name: 'comment', required: true, maxlength: 1000, rows: 2 });
    const form = h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        const start = new Date();
        const end = new Date(start.getTime() + parseFloat(hours.value) * 3600 * 1000);
        try {
          const created = await api('POST', '/api/v2/silences', {
            matchers: matchers(),
            startsAt: start.toISOString(),
            endsAt: end.toISOString(),
            createdBy: by.value.trim(),
            comment: comment.value.trim(),
          });
          go('/silences', new URLSearchParams({ id: created.silenceID }), 'Silence created.');
        } catch (error) {
          flash(error.message);
        }
      },
    },
    h('fieldset', {}, h('legend', {}, 'Matchers (every one must match)'), rows,
      h('button', { type: 'button', onclick: () => { addRow({ name: '', value: '', op: '=' }); schedule(); } }, 'Add matcher')),
    h('div', { class: 'actions' },
      h('label', { for: 'duration' }, 'Duration (hours)', hours),
      h('label', { for: 'created-by' }, 'Created by', by),
      h('label', { for: 'comment' }, 'Comment', comment)),
    h('button', { type: 'submit', class: 'primary' }, 'Create silence'));
    replace(main(), h('h1', {}, 'New silence'), form, h('h2', {}, 'Preview'), preview);
    showPreview();
  }

  // ---- notifications ----

  function notificationTable(notifications, withAlert) {
    if (!notifications.length) return h('p', { class: 'muted' }, 'None.');
    return h('table', {}, h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Event'),
      withAlert ? h('th', { scope: 'col' }, 'Alert') : null,
      h('th', { scope: 'col' }, 'Receiver'), h('th', { scope: 'col' }, 'Route'), h('th', { scope: 'col' }, 'Group'),
      h('th', { scope: 'col' }, 'Channel'),
      h('th', { scope: 'col' }, 'Attempts'),
      h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Sent / next attempt'),
      h('th', { scope: 'col' }, 'Last error'))),
    h('tbody', {}, notifications.map((n) => h('tr', { 'data-id': n.id },
      h('td', {}, state(n.status)), h('td', {}, n.event),
      withAlert ? h('td', {}, h('a', { href: '#/alerts/' + encodeURIComponent(n.alert_id) }, n.alert_id.slice(0, 8))) : null,
      h('td', {}, n.receiver),
      h('td', {}, routeText(n)),
      h('td', {}, groupText(n)),
      h('td', {}, n.slack_channel || ''), h('td', {}, n.attempts),
      h('td', {}, when(n.created_at)),
      h('td', {}, n.sent_at ? when(n.sent_at) : when(n.next_attempt_at)),
      h('td', {}, n.last_error || '')))));
  }

  // The route that chose a notification's receiver, with the reminder or escalation step it is.
  function routeText(n) {
    const payload = n.payload || {};
    const route = n.route === null || n.route === undefined ? 'alerting.slack' : 'routes[' + n.route + ']';
    if (payload.escalation_step) return route + ', escalation step ' + payload.escalation_step;
    if (payload.repeat) return route + ', reminder ' + payload.repeat;
    return route;
  }

  // The group a notification was sent with: its labels (the key without its route), or that it went alone.
  function groupText(n) {
    if (!n.group_key) return 'alone';
    const at = n.group_key.indexOf(':');
    return at < 0 ? n.group_key : n.group_key.slice(at + 1);
  }

  async function notificationsPage(params) {
    const status = h('div', { class: 'panel', id: 'delivery' });
    const list = h('div');
    const summary = h('p', { class: 'muted', id: 'n-summary' });
    const select = h('select', { id: 'n-status', name: 'status' }, h('option', { value: '' }, 'any'),
      ['pending', 'sent', 'failed'].map((s) => h('option', { value: s, selected: params.get('status') === s }, s)));
    const alert = h('input', { id: 'n-alert', name: 'alert_id', value: params.get('alert_id') || '', placeholder: 'alert id', maxlength: 36 });
    const receiver = h('input', { id: 'n-receiver', name: 'receiver', value: params.get('receiver') || '', placeholder: 'receiver', maxlength: 64 });
    const form = h('form', {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (select.value) next.set('status', select.value);
        if (alert.value.trim()) next.set('alert_id', alert.value.trim());
        if (receiver.value.trim()) next.set('receiver', receiver.value.trim());
        go('/notifications', next);
      },
    }, h('label', { for: 'n-status' }, 'Status', select), h('label', { for: 'n-alert' }, 'Alert', alert),
    h('label', { for: 'n-receiver' }, 'Receiver', receiver),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
    replace(main(), h('h1', {}, 'Notifications'), status, form, summary, list);
    const refresh = async () => {
      const query = new URLSearchParams({ limit: '100' });
      if (params.get('status')) query.set('status', params.get('status'));
      if (params.get('alert_id')) query.set('alert_id', params.get('alert_id'));
      if (params.get('receiver')) query.set('receiver', params.get('receiver'));
      const [delivery, page] = await Promise.all([
        api('GET', '/api/v1/notifications/status'),
        api('GET', '/api/v1/notifications?' + query),
      ]);
      replace(status, deliveryView(delivery));
      summary.textContent = page.total + ' notification' + (page.total === 1 ? '' : 's') + (page.total > 100 ? ', newest 100 shown' : '');
      replace(list, notificationTable(page.notifications, true));
    };
    await refresh();
    every(refresh);
  }

  function deliveryView(delivery) {
    // Ids on the first receiver's fields only: an id names one element.
    return delivery.receivers.map((r, i) => h('div', { 'data-receiver': r.name },
      h('h2', {}, 'Receiver: ', r.name, ' (', r.type, ')'),
      r.configured ? h('dl', { class: 'fields' },
        h('dt', {}, 'Circuit breaker'), h('dd', { id: i === 0 ? 'breaker' : null, 'data-field': 'breaker' }, state(r.breaker.state), r.breaker.since ? [' since ', when(r.breaker.since)] : ''),
        h('dt', {}, 'Pending'), h('dd', {}, r.pending),
        h('dt', {}, 'Last delivery'), h('dd', {}, r.last_success_at ? when(r.last_success_at) : 'none yet'),
        h('dt', {}, 'Last error'), h('dd', { id: i === 0 ? 'last-error' : null, 'data-field': 'last-error' }, r.last_error ? [when(r.last_error.at), ': ', r.last_error.message] : 'none'))
        : h('p', { class: 'muted' }, r.pending
          ? r.pending + ' pending: no receiver of this name is configured any more (alerting.notify.receivers); they wait until one is.'
          : 'Not configured: notifications are stored and not sent (alerting.notify, or alerting.slack).')));
  }

  // ---- hosts ----

  async function hostsPage() {
    const view = h('div');
    replace(main(), h('h1', {}, 'Hosts'), view);
    const refresh = async () => {
      const data = await api('GET', '/api/v1/hosts');
      if (!data.source) {
        replace(view, h('div', { class: 'panel', id: 'hosts-off' }, h('p', {}, data.detail)));
        return;
      }
      replace(view,
        h('p', { class: 'muted', id: 'hosts-source' }, data.detail),
        data.hosts.length ? h('div', { class: 'hosts' }, data.hosts.map(hostCard)) : h('p', { class: 'muted' }, 'No host has reported yet.'));
    };
    await refresh();
    // Host points are 10 s apart: redrawing more often shows nothing new.
    every(refresh, 10000);
  }

  function hostCard(host) {
    const metric = (name, label, format) => {
      const series = host[name] || { now: null, points: [] };
      return h('div', { class: 'metric', 'data-metric': name },
        h('span', {}, label),
        h('strong', {}, format(series.now)),
        sparkline(series.points, label));
    };
    return h('section', { class: 'panel', 'data-host': host.host, 'aria-label': 'Host ' + host.host },
      h('h2', {}, host.host),
      metric('cpu', 'CPU', (v) => number(v === null ? null : v * 100, 1) + ' %'),
      metric('memory', 'Memory', (v) => number(v === null ? null : v * 100, 1) + ' %'),
      metric('disk', 'Disk', (v) => number(v === null ? null : v * 100, 1) + ' %'),
      metric('network', 'Network', (v) => bytes(v) + '/s'),
      h('p', { class: 'muted' }, 'Last sample ', host.last_seen ? ago(host.last_seen) + ' ago' : 'unknown'));
  }

  /** An inline SVG line of `points` ([[unix seconds, value], ...]), scaled to its own range. */
  function sparkline(points, label) {
    const width = 200;
    const height = 28;
    const svg = h('svg:svg', { viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none', role: 'img', 'aria-label': label + ', last hour' });
    if (!points || points.length < 2) return svg;
    const t0 = points[0][0];
    const t1 = points[points.length - 1][0];
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of points) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (hi === lo) hi = lo + 1;
    const xy = points.map(([t, v]) => ((t - t0) / Math.max(1, t1 - t0) * width).toFixed(1) + ',' + (height - 2 - (v - lo) / (hi - lo) * (height - 4)).toFixed(1));
    svg.append(h('svg:polyline', { points: xy.join(' ') }));
    return svg;
  }

  // ---- status ----

  async function statusPage() {
    const view = h('div');
    replace(main(), h('h1', {}, 'Status'), view);
    const refresh = async () => {
      const [status, delivery, ready] = await Promise.all([
        api('GET', '/api/v2/status'),
        api('GET', '/api/v1/notifications/status'),
        fetch('/health/ready', { cache: 'no-store' }).then((r) => r.json()).catch(() => ({ status: 'unreachable' })),
      ]);
      const watcher = ready.kubernetes;
      replace(view,
        h('section', { class: 'panel' }, h('h2', {}, 'Service'), h('dl', { class: 'fields' },
          h('dt', {}, 'Version'), h('dd', { id: 'version' }, status.versionInfo.version),
          h('dt', {}, 'Up since'), h('dd', {}, when(status.uptime)),
          h('dt', {}, 'Signed in as'), h('dd', {}, (session.caller.name || 'anonymous') + ' (' + session.caller.access + ')'))),
        h('section', { class: 'panel' }, h('h2', {}, 'Dependencies'), h('dl', { class: 'fields', id: 'dependencies' },
          h('dt', {}, 'Database'), h('dd', {}, state(ready.status === 'ok' ? 'ok' : 'failed'), ready.reason ? ' ' + ready.reason : ''),
          delivery.receivers.map((r) => [h('dt', {}, 'Receiver ' + r.name), h('dd', {}, r.configured ? [state(r.breaker.state), ' circuit breaker', r.last_error ? ' · last error: ' + r.last_error.message : ''] : 'not configured')]),
          h('dt', {}, 'Pod watcher'), h('dd', {}, watcher ? [state(watcher.state), ' since ', when(watcher.since), watcher.last_error ? ' · ' + watcher.last_error : ''] : 'off'),
          (session.components || []).map((c) => [h('dt', {}, c.name), h('dd', { 'data-component': c.name }, state(c.state), ' ', c.detail)]))),
        h('section', { class: 'panel' }, h('h2', {}, 'Configuration'), h('pre', { class: 'mono', id: 'config' }, status.config.original)));
    };
    await refresh();
    every(refresh);
  }

  // ---- theme, start ----

  function applyTheme(theme) {
    if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
    else delete document.documentElement.dataset.theme;
    document.getElementById('theme').textContent = 'Theme: ' + (theme || 'auto');
  }

  document.addEventListener('DOMContentLoaded', () => {
    applyTheme(localStorage.getItem(THEME_KEY));
    document.getElementById('theme').addEventListener('click', () => {
      const order = ['auto', 'light', 'dark'];
      const now = localStorage.getItem(THEME_KEY) || 'auto';
      const next = order[(order.indexOf(now) + 1) % order.length];
      localStorage.setItem(THEME_KEY, next);
      applyTheme(next);
    });
    document.getElementById('signout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      session = null;
      login();
    });
    // A new page starts without the last page's message; a redraw after an action keeps it.
    window.addEventListener('hashchange', () => {
      flash(carried || '', Boolean(carried));
      carried = null;
      render();
    });
    render();
  });
})();
