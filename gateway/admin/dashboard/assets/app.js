// Sluice dashboard. Plain script, no framework: it polls the /api/ routes
// every second and renders with DOM calls (text is never parsed as HTML).
'use strict';
(() => {
  const REFRESH = 1000;
  const view = document.getElementById('view');
  const status = document.getElementById('status');
  const dialog = document.getElementById('dialog');
  let current = '';
  let timer = 0;
  let generation = 0;
  let schema = null;

  // el builds an element: el('td', {class: 'x', text: 'y', onclick: f}, child...).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // api calls an admin route; it answers {status, data, etag}.
  async function api(method, path, body, ifMatch) {
    const headers = {'X-Sluice-Dashboard': '1'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (ifMatch !== undefined) headers['If-Match'] = '"' + ifMatch + '"';
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 30000);
    try {
      const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin', signal: ctl.signal});
      if (r.status === 401) { location.reload(); }
      const data = await r.json().catch(() => ({}));
      if (data.config_version) document.getElementById('version').textContent = data.config_version;
      return {status: r.status, data, etag: (r.headers.get('ETag') || '').replaceAll('"', '')};
    } finally {
      clearTimeout(t);
    }
  }

  function say(msg, bad) {
    status.textContent = msg;
    status.className = bad ? 'bad' : '';
  }

  function problems(data) {
    const e = (data && data.error) || {};
    return el('div', {class: 'problems', role: 'alert'},
      el('p', {text: e.message || 'The request failed.'}),
      (e.problems || []).length ? el('ul', {}, e.problems.map(p => el('li', {text: p}))) : null);
  }

  // keep re-renders from losing the keyboard focus: the focused control
  // is found again by its data-key.
  function rerender(node) {
    const key = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : '';
    view.replaceChildren(node);
    if (key) {
      const again = view.querySelector('[data-key="' + CSS.escape(key) + '"]');
      if (again) again.focus();
    }
  }

  const compact = new Intl.NumberFormat('en', {notation: 'compact', maximumFractionDigits: 1});
  const fmt = {
    n: v => (v === undefined || v === null) ? '—' : (Math.round(v * 100) / 100).toLocaleString(),
    ms: v => v ? (v >= 1000 ? (v / 1000).toFixed(1) + ' s' : Math.round(v) + ' ms') : '—',
    pct: v => (v * 100).toFixed(1) + ' %',
    short: v => v < 100000 ? String(v) : compact.format(v),
    ago: t => {
      const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
      return s < 60 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
    },
  };

  // sparkline draws a series as an SVG line.
  function sparkline(values, label) {
    const w = 240, h = 48, max = Math.max(...values, 1e-9);
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const line = document.createElementNS(ns, 'polyline');
    const step = values.length > 1 ? w / (values.length - 1) : w;
    line.setAttribute('points', values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(' '));
    svg.append(line);
    return svg;
  }

  // meter shows used of limit for one window of owner (a credential, a
  // channel, a client key, a group), named data-meter="owner/window".
  function meter(owner, w) {
    if (!w || !w.Limit) return null;
    const used = w.Limit - w.Remaining;
    const money = w.unit === 'usd';
    const show = v => money ? '$' + (v / 1e6).toFixed(2) : fmt.short(v);
    const resets = w.resets ? ' · resets ' + new Date(w.resets).toLocaleString() : '';
    return el('div', {class: 'meter'},
      el('span', {class: 'kind', text: w.name}),
      el('meter', {min: 0, max: w.Limit, value: used, low: w.Limit * 0.7, high: w.Limit * 0.9, optimum: 0, 'data-meter': owner + '/' + w.name,
        'aria-label': `${w.name}: ${show(used)} of ${show(w.Limit)} used${resets}`}),
      el('span', {class: 'num', title: `${used} / ${w.Limit}${resets}`, text: `${show(used)} / ${show(w.Limit)}`}));
  }

  // meters shows every window of a subject, the qps bucket as what is
  // taken of its burst.
  function meters(owner, usage) {
    const shown = ((usage || {}).windows || []).map(w => meter(owner, w)).filter(Boolean);
    return shown.length ? shown : el('span', {class: 'muted', text: 'no limits'});
  }

  function badge(text, kind) {
    return el('span', {class: 'badge ' + (kind || text), text});
  }

  function button(text, onclick, key, extra) {
    return el('button', Object.assign({type: 'button', onclick, 'data-key': key, text}, extra || {}));
  }

  // act runs an action and says how it went.
  async function act(what, method, path, body, ifMatch) {
    say(what + '…');
    const r = await api(method, path, body, ifMatch);
    if (r.status >= 300) {
      say(what + ' failed: ' + ((r.data.error && r.data.error.message) || r.status), true);
      return r;
    }
    say(what + ': done.');
    refresh();
    return r;
  }

  // ---- Overview ----------------------------------------------------------

  async function overview() {
    const {data} = await api('GET', '/api/overview');
    const last = data.last_minute || {};
    const series = data.series || [];
    const cards = el('section', {class: 'cards', 'aria-label': 'The last minute'},
      card('Requests / s', fmt.n(last.rps), sparkline(series.map(p => p.rps), 'requests per second, last 5 minutes')),
      card('Errors', fmt.pct(last.error_rate || 0), sparkline(series.map(p => p.error_rate), 'error rate, last 5 minutes')),
      card('p50 latency', fmt.ms(last.p50_ms), sparkline(series.map(p => p.p50_ms), 'median latency, last 5 minutes')),
      card('p99 latency', fmt.ms(last.p99_ms), sparkline(series.map(p => p.p99_ms), '99th percentile latency, last 5 minutes')));
    const redis = data.redis || {};
    const shared = !redis.shared ? 'not configured: this instance keeps its own quotas'
      : redis.degraded ? `unreachable: the ${redis.policy} policy decides` : 'connected';
    const instances = el('table', {}, el('caption', {text: 'Instances'}),
      el('thead', {}, el('tr', {}, ['Instance', 'Address', 'Version', 'Config', 'Last heartbeat', 'State'].map(h => el('th', {scope: 'col', text: h})))),
      el('tbody', {}, (data.instances || []).map(i => {
        const up = Date.now() - Date.parse(i.last_heartbeat) < 15000;
        return el('tr', {}, el('td', {text: i.id}), el('td', {text: i.address}), el('td', {text: i.version}),
          el('td', {text: i.config_version || '—'}), el('td', {text: fmt.ago(i.last_heartbeat)}),
          el('td', {}, badge(up ? 'up' : 'silent', up ? 'closed' : 'open')));
      })));
    const open = data.open_breakers || [];
    return (el('div', {},
      el('h1', {text: 'Overview'}),
      el('p', {class: 'muted', text: `Counts of the ${data.stats_scope === 'cluster' ? 'whole cluster' : 'instance ' + data.instance}, config ${data.config_version}. Redis: ${shared}.`}),
      cards, instances,
      el('h2', {text: 'Open breakers'}),
      open.length ? el('ul', {class: 'breakers'}, open.map(b => el('li', {}, badge(b.state, b.state === 'open' ? 'open' : 'half'), ` ${b.channel} / ${b.credential}`)))
        : el('p', {class: 'muted', text: 'None: every credential is in service.'})));
  }

  function card(title, value, chart) {
    return el('div', {class: 'card'}, el('h2', {text: title}), el('p', {class: 'value', text: value}), chart);
  }

  // ---- Channels ----------------------------------------------------------

  async function channels() {
    const {data, etag} = await api('GET', '/api/channels');
    const list = data.channels || [];
    return (el('div', {},
      el('div', {class: 'bar-head'}, el('h1', {text: 'Channels'}),
        button('Add channel', () => channelForm(null, etag), 'add-channel')),
      list.map(ch => channelCard(ch, etag))));
  }

  function channelCard(ch, etag) {
    const api_ = ch.source === 'api';
    const tools = el('div', {class: 'tools'},
      button('Test', () => testChannel(ch.name), 'test-' + ch.name),
      button(ch.enabled ? 'Disable' : 'Enable', () => act((ch.enabled ? 'Disable ' : 'Enable ') + ch.name, 'PATCH',
        '/api/channels/' + encodeURIComponent(ch.name), {enabled: !ch.enabled}), 'toggle-' + ch.name),
      api_ ? button('Edit', () => channelForm(ch, etag), 'edit-' + ch.name) : null,
      api_ ? button('Delete', () => confirmDelete(ch.name, etag), 'delete-' + ch.name, {class: 'danger'}) : null);
    return el('section', {class: 'channel' + (ch.enabled ? '' : ' off'), 'aria-label': 'Channel ' + ch.name},
      el('div', {class: 'bar-head'},
        el('h2', {}, ch.name, ' ', badge(ch.type, 'type'), ' ', badge(api_ ? 'api' : 'file', 'source'),
          ch.enabled ? null : badge('disabled', 'open')),
        tools),
      el('p', {class: 'muted', text: api_ ? 'Added through the API.' : `Defined in ${ch.file}: read-only here.`}),
      el('p', {class: 'models', text: 'Models: ' + (ch.models || []).join(', ')}),
      ch.shared ? el('div', {class: 'shared'}, el('h3', {text: 'Shared by its credentials'}), meters('channel:' + ch.name, ch.shared.usage)) : null,
      el('table', {}, el('thead', {}, el('tr', {}, ['Credential', 'Breaker', 'In flight', 'Quota (used / limit)', 'Last error', ''].map(h => el('th', {scope: 'col', text: h})))),
        el('tbody', {}, (ch.credentials || []).map(cr => credentialRow(ch, cr)))),
      el('div', {class: 'result', id: 'result-' + ch.name}));
  }

  function credentialRow(ch, cr) {
    const id = encodeURIComponent(cr.id);
    return el('tr', {class: cr.enabled ? '' : 'off'},
      el('th', {scope: 'row'}, cr.id, cr.enabled ? null : el('span', {class: 'muted', text: ' (disabled)'})),
      el('td', {'data-label': 'Breaker'}, badge(cr.breaker, cr.breaker === 'half-open' ? 'half' : cr.breaker)),
      el('td', {'data-label': 'In flight', text: String(cr.in_flight)}),
      el('td', {class: 'meters'}, meters(cr.id, cr.usage)),
      el('td', {class: 'err', 'data-label': 'Last error', text: cr.last_error ? `${cr.last_error} (${fmt.ago(cr.last_error_at)})` : '—'}),
      el('td', {}, el('div', {class: 'tools'},
        button('Test', () => testChannel(ch.name, cr.id), 'test-' + cr.id),
        button(cr.enabled ? 'Disable' : 'Enable', () => act((cr.enabled ? 'Disable ' : 'Enable ') + cr.id, 'PATCH',
          '/api/credentials/' + id, {enabled: !cr.enabled}), 'toggle-' + cr.id),
        cr.breaker !== 'closed' ? button('Reset breaker', () => act('Reset ' + cr.id, 'POST', '/api/credentials/' + id + '/reset'), 'reset-' + cr.id) : null)));
  }

  async function testChannel(name, credential) {
    say('Testing ' + (credential || name) + '…');
    const r = await api('POST', '/api/channels/test', {name, credential});
    showResults(document.getElementById('result-' + name), r);
    say(r.data.ok ? `${credential || name}: test passed.` : `${credential || name}: test failed.`, !r.data.ok);
  }

  function showResults(where, r) {
    if (!where) return;
    if (r.status >= 300) { where.replaceChildren(problems(r.data)); return; }
    where.replaceChildren(el('ul', {class: 'tests'}, (r.data.results || []).map(t =>
      el('li', {class: t.status === 200 ? 'ok' : 'fail'},
        `${t.credential} · ${t.model} · ${t.status} · ${t.latency_ms} ms`, t.error ? ' · ' + t.error : ''))));
  }

  function confirmDelete(name, etag) {
    openDialog('Delete channel ' + name + '?', el('p', {text: 'Every instance stops routing to it at once.'}), [
      button('Cancel', () => dialog.close(), 'cancel'),
      button('Delete', async () => {
        const r = await act('Delete ' + name, 'DELETE', '/api/channels/' + encodeURIComponent(name), undefined, etag);
        if (r.status < 300) dialog.close();
      }, 'confirm-delete', {class: 'danger'})]);
  }

  // channelForm edits a channel (ch) or adds one (ch null), in a dialog:
  // fields from /api/schema, checked by the server (dry run), tested, saved.
  async function channelForm(ch, etag) {
    if (!schema) schema = (await api('GET', '/api/schema')).data;
    const cfg = ch ? ch.config : {type: 'openai', credentials: [{}]};
    const types = schema.types || [];
    const f = {};
    const input = (name, label, value, attrs, help) => {
      const id = 'f-' + name.replace(/\W/g, '-');
      f[name] = el('input', Object.assign({id, name, value: value === undefined ? '' : value}, attrs || {}));
      return el('div', {class: 'field'}, el('label', {for: id, text: label}), f[name],
        help ? el('small', {text: help}) : null);
    };
    const help = n => ((schema.fields || []).find(x => x.name === n) || {}).help;
    f.type = el('select', {id: 'f-type', name: 'type'}, types.map(t => el('option', {value: t.type, selected: t.type === cfg.type, text: t.type})));
    const baseHint = el('small', {});
    const hint = () => {
      const t = types.find(x => x.type === f.type.value) || {};
      baseHint.textContent = t.base_url ? `Default: ${t.base_url}. Key sent as ${t.auth}.` : 'This type needs a base URL.';
    };
    f.type.addEventListener('change', hint);
    hint();
    const cr = (cfg.credentials || [{}]);
    const creds = el('div', {class: 'creds'});
    const addCred = c => {
      const i = creds.children.length;
      const lim = c.limits || {};
      creds.append(el('fieldset', {}, el('legend', {text: 'Credential ' + (i + 1)}),
        input(`cred${i}.id`, 'ID', c.id, {placeholder: 'default: <name>#' + i}),
        input(`cred${i}.key`, 'Key', c.key, {type: 'password', autocomplete: 'off'}),
        input(`cred${i}.rpm`, 'RPM', lim.rpm, {type: 'number', min: 0}),
        input(`cred${i}.tpm`, 'TPM', lim.tpm, {type: 'number', min: 0}),
        input(`cred${i}.concurrency`, 'Concurrency', lim.concurrency, {type: 'number', min: 0}),
        el('small', {class: 'wide', text: help('credentials[].key') + ' Limits hold for the whole cluster.'})));
    };
    cr.forEach(addCred);
    const out = el('div', {class: 'result', id: 'form-result'});
    const body = el('div', {class: 'form'},
      input('name', 'Name', cfg.name, {required: true, readonly: !!ch}, help('name')),
      el('div', {class: 'field'}, el('label', {for: 'f-type', text: 'Type'}), f.type, el('small', {text: help('type')})),
      withHint(input('base_url', 'Base URL', cfg.base_url, {}), baseHint),
      input('models', 'Models', (cfg.models || []).join(', '), {required: true}, help('models')),
      input('priority', 'Priority', cfg.priority || '', {type: 'number'}, help('priority')),
      creds,
      button('Add a credential', () => addCred({}), 'add-cred'),
      out);
    const collect = () => {
      const n = v => v === '' || v === undefined ? undefined : Number(v);
      const c = {name: f.name.value.trim(), type: f.type.value, models: f.models.value.split(',').map(s => s.trim()).filter(Boolean)};
      if (f.base_url.value.trim()) c.base_url = f.base_url.value.trim();
      if (f.priority.value) c.priority = n(f.priority.value);
      c.credentials = [];
      for (let i = 0; i < creds.children.length; i++) {
        const lim = {rpm: n(f[`cred${i}.rpm`].value), tpm: n(f[`cred${i}.tpm`].value), concurrency: n(f[`cred${i}.concurrency`].value)};
        const k = {id: f[`cred${i}.id`].value.trim() || undefined, key: f[`cred${i}.key`].value || undefined};
        if (Object.values(lim).some(v => v !== undefined)) k.limits = lim;
        c.credentials.push(k);
      }
      return c;
    };
    // mark flags the fields the problems name ("models: ...",
    // "credentials[0].key: ...") for the eye and for screen readers.
    const mark = data => {
      for (const x of Object.values(f)) x.removeAttribute('aria-invalid');
      for (const p of ((data && data.error && data.error.problems) || [])) {
        const m = /^(\w+)(?:\[(\d+)\]\.(?:limits\.)?(\w+))?:/.exec(p);
        const x = m && (m[2] !== undefined ? f[`cred${m[2]}.${m[3]}`] : f[m[1]]);
        if (x) x.setAttribute('aria-invalid', 'true');
      }
    };
    const path = ch ? '/api/channels/' + encodeURIComponent(ch.name) : '/api/channels';
    const method = ch ? 'PUT' : 'POST';
    openDialog(ch ? 'Edit channel ' + ch.name : 'Add a channel', body, [
      button('Cancel', () => dialog.close(), 'cancel'),
      button('Check', async () => {
        const r = await api(method, path + '?dry_run=true', collect());
        out.replaceChildren(r.status < 300 ? el('p', {class: 'ok', text: 'Valid.'}) : problems(r.data));
        mark(r.data);
      }, 'check'),
      button('Test', async () => {
        const r = await api('POST', '/api/channels/test', {channel: collect()});
        showResults(out, r);
      }, 'test-form'),
      button('Save', async () => {
        const r = await api(method, path, collect(), ch ? etag : undefined);
        if (r.status >= 300) { out.replaceChildren(problems(r.data)); mark(r.data); return; }
        dialog.close();
        say(`Channel ${r.data.channel.name} saved (version ${r.data.version}): every instance serves it.`);
        refresh();
      }, 'save', {class: 'primary'})]);
  }

  function withHint(field, hint) {
    field.append(hint);
    return field;
  }

  function openDialog(title, body, actions) {
    document.getElementById('dialog-title').textContent = title;
    document.getElementById('dialog-body').replaceChildren(body);
    document.getElementById('dialog-actions').replaceChildren(...actions);
    if (!dialog.open) dialog.showModal();
  }

  // ---- Clients -----------------------------------------------------------

  async function clients() {
    const {data} = await api('GET', '/api/clients');
    return (el('div', {},
      el('div', {class: 'bar-head'}, el('h1', {text: 'Client keys'}), button('New client key', clientForm, 'add-client')),
      el('table', {}, el('thead', {}, el('tr', {}, ['Name', 'Models', 'Expires', 'Usage (used / limit)', 'State', ''].map(h => el('th', {scope: 'col', text: h})))),
        el('tbody', {}, (data.clients || []).map(clientRow))),
      (data.groups || []).length ? el('div', {},
        el('h2', {text: 'Groups'}),
        el('table', {}, el('thead', {}, el('tr', {}, ['Group', 'Usage and budgets (used / limit)'].map(h => el('th', {scope: 'col', text: h})))),
          el('tbody', {}, data.groups.map(g => el('tr', {},
            el('th', {scope: 'row', text: g.name}),
            el('td', {class: 'meters'}, meters('group:' + g.name, g.usage))))))) : null));
  }

  function clientRow(c) {
    const n = encodeURIComponent(c.name);
    const api_ = c.source === 'api';
    return el('tr', {class: c.enabled ? '' : 'off'},
      el('th', {scope: 'row'}, c.name, ' ', badge(c.source, 'source'), c.group ? el('span', {class: 'muted', text: ' in ' + c.group}) : null),
      el('td', {text: (c.models || ['every model']).join(', ')}),
      el('td', {text: c.expires_at ? new Date(c.expires_at).toLocaleString() : 'never'}),
      el('td', {class: 'meters'}, meters('client:' + c.name, c.usage)),
      el('td', {}, badge(c.enabled ? 'enabled' : 'revoked', c.enabled ? 'closed' : 'open')),
      el('td', {}, el('div', {class: 'tools'},
        button(c.enabled ? 'Revoke' : 'Enable', () => act((c.enabled ? 'Revoke ' : 'Enable ') + c.name, 'PATCH', '/api/clients/' + n, {enabled: !c.enabled}), 'toggle-client-' + c.name),
        api_ ? button('Rotate', () => rotate(c.name), 'rotate-' + c.name) : null,
        api_ ? button('Delete', () => act('Delete ' + c.name, 'DELETE', '/api/clients/' + n), 'delete-client-' + c.name, {class: 'danger'}) : null)));
  }

  function clientForm() {
    const f = {};
    const input = (name, label, attrs) => {
      f[name] = el('input', Object.assign({id: 'c-' + name, name}, attrs || {}));
      return el('div', {class: 'field'}, el('label', {for: 'c-' + name, text: label}), f[name]);
    };
    const out = el('div', {class: 'result'});
    openDialog('New client key', el('div', {class: 'form'},
      input('name', 'Name', {required: true}), input('models', 'Models (comma-separated; empty: every model)'),
      input('rpm', 'RPM', {type: 'number', min: 0}), input('tpm', 'TPM', {type: 'number', min: 0}),
      input('expires', 'Expires', {type: 'datetime-local'}), out), [
      button('Cancel', () => dialog.close(), 'cancel'),
      button('Create', async () => {
        const body = {name: f.name.value.trim()};
        const models = f.models.value.split(',').map(s => s.trim()).filter(Boolean);
        if (models.length) body.models = models;
        if (f.rpm.value || f.tpm.value) body.limits = {rpm: Number(f.rpm.value) || undefined, tpm: Number(f.tpm.value) || undefined};
        if (f.expires.value) body.expires_at = new Date(f.expires.value).toISOString();
        const r = await api('POST', '/api/clients', body);
        if (r.status >= 300) { out.replaceChildren(problems(r.data)); return; }
        showKey('Client key ' + r.data.name, r.data.key);
        refresh();
      }, 'create', {class: 'primary'})]);
  }

  async function rotate(name) {
    const r = await api('POST', '/api/clients/' + encodeURIComponent(name) + '/rotate', {});
    if (r.status >= 300) { say('Rotate failed: ' + r.data.error.message, true); return; }
    showKey('New key of ' + name, r.data.key);
    refresh();
  }

  // showKey shows a new key once, with a copy button.
  function showKey(title, key) {
    const field = el('input', {id: 'new-key', readonly: true, value: key, 'aria-label': 'The new key'});
    const copied = el('span', {role: 'status'});
    openDialog(title, el('div', {},
      el('p', {text: 'Copy it now: it is shown once. Sluice keeps only its digest.'}), field, copied), [
      button('Copy', async () => {
        field.select();
        try { await navigator.clipboard.writeText(key); copied.textContent = ' Copied.'; }
        catch { copied.textContent = ' Selected: press Ctrl+C.'; }
      }, 'copy-key'),
      button('Done', () => dialog.close(), 'done', {class: 'primary'})]);
  }

  // ---- Config ------------------------------------------------------------

  async function configView() {
    const [{data}, audit] = await Promise.all([api('GET', '/api/config'), api('GET', '/api/audit?limit=50')]);
    const out = el('div', {class: 'result', id: 'reload-result'});
    return (el('div', {},
      el('div', {class: 'bar-head'}, el('h1', {text: 'Config'}),
        button('Reload the config file', async () => {
          const r = await api('POST', '/api/reload');
          out.replaceChildren(r.status < 300 ? el('p', {class: 'ok', text: 'Reloaded on every instance: ' + r.data.config_version}) : problems(r.data));
          if (r.status < 300) refresh();
        }, 'reload')),
      el('p', {class: 'muted', text: `Version ${data.config_version} (overlay ${data.version}): ${data.file} and the changes made here. Secrets are shown as *** or as their \${VAR}.`}),
      out,
      el('pre', {class: 'config', tabindex: 0, text: JSON.stringify(data.config, null, 2)}),
      el('h2', {text: 'Audit log'}),
      el('table', {}, el('thead', {}, el('tr', {}, ['When', 'Who', 'What', 'Target', 'Version'].map(h => el('th', {scope: 'col', text: h})))),
        el('tbody', {}, (audit.data.entries || []).map(e => el('tr', {},
          el('td', {text: new Date(e.time).toLocaleString()}), el('td', {text: e.actor}), el('td', {text: e.action}),
          el('td', {text: e.target || ''}), el('td', {text: e.version || ''})))))));
  }

  // ---- The loop ------------------------------------------------------------

  const views = {overview, channels, clients, config: configView};

  // refresh renders the current view and schedules the next refresh. Only
  // the latest call renders and schedules: one timer at a time however many actions
  // ask for a refresh, and slow answers never pile up requests.
  async function refresh() {
    clearTimeout(timer);
    const mine = ++generation;
    try {
      if (!dialog.open || current === 'overview') {
        const node = await views[current]();
        if (mine === generation) rerender(node);
      }
    } catch (e) {
      say('Could not reach Sluice: ' + e.message, true);
    }
    if (mine === generation) timer = setTimeout(refresh, REFRESH);
  }

  function route() {
    current = (location.hash || '#overview').slice(1);
    if (!views[current]) current = 'overview';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.view === current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    view.replaceChildren(el('p', {class: 'muted', text: 'Loading…'}));
    refresh();
  }

  window.addEventListener('hashchange', route);
  dialog.addEventListener('close', () => refresh());
  route();
})();
