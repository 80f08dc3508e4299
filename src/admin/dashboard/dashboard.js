'use strict';
// The rollout dashboard. It reads the admin's event stream (fetch with the
// bearer token, since EventSource cannot send headers) and draws what it
// gets; actions are the admin's JSON control routes in their conditional
// form. The token lives in this closure only: never in a URL, storage or
// cookie. Every field of the admin's documents may be missing: a router
// without a plan, without a comparison, one model or a fleet.

(() => {
  const $ = (id) => document.getElementById(id);
  const KEEP_MS = 10 * 60 * 1000; // samples kept in the page
  const SHOW_MS = 5 * 60 * 1000; // the charts' window at most
  const MIN_SHOW_MS = 30 * 1000; // and at least
  const COLORS = ['blue', 'green'];

  const state = {
    token: null,
    mode: null, // 'handle' or 'fleet', from the stream's hello
    selected: null, // the model shown, in a fleet
    status: null, // the last status document shown
    samples: new Map(), // model key -> [{ t, m }], oldest first
    lastSeq: 0,
    stream: null, // AbortController of the open stream
    retries: 0,
    retryTimer: null,
    pending: null, // the action waiting for its confirmation
  };

  // === where the admin is ===

  /** The admin's base path: the page's own path, as a folder. */
  function basePath() {
    let path = window.location.pathname.replace(/index\.html$/, '');
    if (!path.endsWith('/')) path += '/';
    return path;
  }
  const BASE = basePath();

  const keyOf = (name) => name ?? '';
  const modelPrefix = () =>
    state.mode === 'fleet' && state.selected ? `models/${encodeURIComponent(state.selected)}/` : '';

  // === formatting (every input may be null or missing) ===

  const missing = (v) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v));
  const dash = '—';
  const num = (v) => (missing(v) ? dash : Number(v).toLocaleString('en-US'));
  const pct = (v, digits = 1) => (missing(v) ? dash : `${(v * 100).toFixed(digits)}%`);
  const rate = (v) => (missing(v) ? dash : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  function micros(us) {
    if (missing(us)) return dash;
    if (us < 1000) return `${us} µs`;
    if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
    return `${(us / 1e6).toFixed(2)} s`;
  }
  function duration(ms) {
    if (missing(ms)) return dash;
    const s = Math.floor(ms / 1000);
    return s < 60 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }
  function clock(ms) {
    if (missing(ms)) return dash;
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, '0');
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  function setText(id, value) {
    const node = $(id);
    if (node) node.textContent = missing(value) ? dash : String(value);
  }

  function cell(row, content, className) {
    const td = document.createElement('td');
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = missing(content) ? dash : String(content);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function badge(color, extra) {
    const span = document.createElement('span');
    span.className = `badge ${COLORS.includes(color) ? color : ''} ${extra || ''}`;
    span.textContent = color || '?';
    return span;
  }

  function setBadge(id, color, live) {
    const node = $(id);
    node.className = `badge ${COLORS.includes(color) ? color : ''} ${live ? 'live' : ''}`;
    node.textContent = color || '?';
  }

  // === messages ===

  function say(text, bad) {
    $('message').textContent = text;
    const box = $('message-box');
    box.className = bad ? 'message bad' : 'message';
    box.hidden = false;
  }

  const unsay = () => {
    $('message-box').hidden = true;
  };

  function setConnection(kind, text) {
    const node = $('connection');
    node.className = `conn conn-${kind}`;
    node.textContent = text;
  }

  // === calls to the admin ===

  function headers() {
    return { Authorization: `Bearer ${state.token}`, 'Content-Type': 'application/json' };
  }

  /** Calls the admin; resolves to { status, ok, json } and never rejects. */
  async function api(path, method = 'GET', body = undefined) {
    try {
      const res = await fetch(BASE + path, {
        method,
        headers: headers(),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
      let json = null;
      try {
        json = await res.json();
      } catch (_) {
        json = null;
      }
      return { status: res.status, ok: res.ok, json };
    } catch (err) {
      return { status: 0, ok: false, json: { error: `the admin is unreachable (${err.message})` } };
    }
  }

  /** The token was refused: forget it and ask again, saying why. */
  function refused(status, json) {
    state.token = null;
    closeStream();
    $('model').hidden = true;
    $('fleet').hidden = true;
    unsay();
    $('sign-out').hidden = true;
    $('login').hidden = false;
    const why = json?.error ? `: ${json.error}` : '';
    const error = $('token-error');
    error.textContent =
      `The admin refused this token (${status}${why}). Enter the admin's bearer token again.`;
    error.hidden = false;
    setConnection('off', 'not connected');
    $('token-input').focus();
  }

  async function connect(token) {
    state.token = token;
    $('token-error').hidden = true;
    setConnection('wait', 'connecting…');
    const res = await api('history');
    if (res.status === 401 || res.status === 403) return refused(res.status, res.json);
    if (!res.ok) {
      state.token = null;
      setConnection('off', 'not connected');
      const error = $('token-error');
      error.textContent = `Could not connect: ${res.json?.error || `answer ${res.status}`}.`;
      error.hidden = false;
      return;
    }
    for (const sample of res.json?.samples || []) addSample(sample);
    $('login').hidden = true;
    $('sign-out').hidden = false;
    openStream();
  }

  // === the event stream ===

  function closeStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    clearTimeout(state.retryTimer);
  }

  function reconnectLater(why) {
    if (!state.token) return;
    state.retries += 1;
    const wait = Math.min(500 * state.retries, 5000);
    setConnection('wait', `reconnecting (${why})`);
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(openStream, wait);
  }

  async function openStream() {
    closeStream();
    if (!state.token) return;
    const control = new AbortController();
    state.stream = control;
    const path = `${modelPrefix()}events`;
    let res;
    try {
      res = await fetch(BASE + path, { headers: headers(), signal: control.signal, cache: 'no-store' });
    } catch (_) {
      if (!control.signal.aborted) reconnectLater('the admin is unreachable');
      return;
    }
    if (res.status === 401 || res.status === 403) {
      let json = null;
      try {
        json = await res.json();
      } catch (_) {
        json = null;
      }
      return refused(res.status, json);
    }
    if (res.status === 404 && state.mode === 'fleet' && state.selected) {
      return leftFleet();
    }
    if (!res.ok || !res.body) {
      reconnectLater(`events answered ${res.status}`);
      return;
    }
    setConnection('live', 'live');
    state.retries = 0;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          handleFrame(frame);
        }
      }
    } catch (_) {
      // Aborted (another model chosen, token forgotten) or cut off.
    }
    if (state.stream === control) reconnectLater('the stream ended');
  }

  /** One server-sent event: `event:` and `data:` lines. */
  function handleFrame(frame) {
    let name = 'message';
    const data = [];
    for (const line of frame.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    let payload;
    try {
      payload = JSON.parse(data.join('\n'));
    } catch (_) {
      return; // a comment or keep-alive
    }
    try {
      if (name === 'hello') onHello(payload);
      else if (name === 'sample') onSample(payload);
      else if (name === 'status') onStatus(payload);
    } catch (err) {
      // A bug of this page, not of the stream: say it, keep reading.
      console.error(`dashboard: could not show a ${name} event`, err);
    }
  }

  function onHello(hello) {
    state.mode = hello?.mode === 'fleet' ? 'fleet' : 'handle';
    $('fleet').hidden = state.mode !== 'fleet';
    if (state.mode === 'fleet') {
      const names = (hello.models || []).filter((n) => typeof n === 'string');
      if (!state.selected || !names.includes(state.selected)) {
        if (names.length > 0) return select(names[0]);
        state.selected = null;
        $('model').hidden = true;
      }
    }
    renderFleet();
  }

  function onSample(sample) {
    addSample(sample);
    if (state.mode === 'fleet' && state.selected && !state.samples.has(state.selected)) {
      return leftFleet();
    }
    renderFleet();
    renderLive();
    renderCharts();
  }

  function onStatus(event) {
    if (state.mode === 'fleet' && event?.model !== state.selected) return;
    if (!event?.status) return;
    state.status = event.status;
    render();
  }

  /** The model shown was removed from the fleet: show another one. */
  function leftFleet() {
    say(`The model ${state.selected} is no longer in the fleet.`, true);
    const next = [...state.samples.keys()].sort()[0];
    state.selected = null;
    state.status = null;
    $('model').hidden = true;
    if (next !== undefined) select(next);
    else openStream();
  }

  function select(name) {
    if (state.selected === name && state.stream) return;
    state.selected = name;
    state.status = null;
    $('model').hidden = true;
    renderFleet();
    openStream();
  }

  // === samples (the charts' history) ===

  function addSample(sample) {
    if (missing(sample?.seq) || !Array.isArray(sample.models)) return;
    if (sample.seq <= state.lastSeq && state.lastSeq - sample.seq < 1000) return; // seen
    if (sample.seq < state.lastSeq) state.samples.clear(); // the server restarted
    state.lastSeq = sample.seq;
    const t = sample.at_unix_ms;
    for (const m of sample.models) {
      const key = keyOf(m?.model);
      if (!state.samples.has(key)) state.samples.set(key, []);
      const points = state.samples.get(key);
      points.push({ t, m });
      while (points.length > 0 && points[0].t < t - KEEP_MS) points.shift();
    }
    const present = new Set(sample.models.map((m) => keyOf(m?.model)));
    for (const key of state.samples.keys()) {
      if (!present.has(key)) state.samples.delete(key);
    }
  }

  function latest(key) {
    const points = state.samples.get(key);
    return points && points.length > 0 ? points[points.length - 1].m : null;
  }

  const selectedKey = () => keyOf(state.mode === 'fleet' ? state.selected : null);

  // === the fleet ===

  function matchesFilter(m, filter) {
    const plan = m.plan;
    const planRunning = ['running', 'holding', 'paused'].includes(plan);
    switch (filter) {
      case 'steady':
        return !(m.split > 0) && !(m.mirror > 0) && !planRunning;
      case 'canary':
        return m.split > 0;
      case 'mirror':
        return m.mirror > 0;
      case 'plan':
        return planRunning;
      case 'stopped':
        return plan === 'aborted' || plan === 'superseded';
      default:
        return true;
    }
  }

  /**
   * A fleet row's facts: the model's last sample, with the routing state
   * of the shown model taken from its status (sent within 250 ms of a
   * change, where samples come once a second).
   */
  function rowFacts(key, sample) {
    const doc = state.status;
    if (!sample || key !== state.selected || !doc) return sample;
    const colors = {};
    for (const c of COLORS) colors[c] = { ...(sample.colors?.[c] || {}), version: doc.colors?.[c]?.version };
    return { ...sample, active: doc.active, split: doc.split, mirror: doc.mirror, plan: doc.plan?.state ?? null, phase: doc.plan?.phase ?? null, colors };
  }

  /**
   * The fleet's table. Rows are kept and updated in place (a row rebuilt
   * under the pointer would lose a click); filtered ones are hidden.
   */
  const fleetRows = new Map(); // model key -> tr

  function fleetRow(key) {
    let row = fleetRows.get(key);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.model = key;
      for (let i = 0; i < 9; i += 1) row.appendChild(document.createElement('td'));
      row.addEventListener('click', () => {
        unsay();
        select(key);
      });
      fleetRows.set(key, row);
    }
    return row;
  }

  /** Sets a cell's text, touching the DOM only when it changed. */
  function setCell(td, value) {
    const text = missing(value) ? dash : String(value);
    if (td.textContent !== text) td.textContent = text;
  }

  function fillFleetRow(row, key, m) {
    const live = m.active;
    const standby = live === 'blue' ? 'green' : 'blue';
    const tds = row.children;
    setCell(tds[0], key);
    const liveVersion = m.colors?.[live]?.version ?? '';
    const signature = `${live}|${liveVersion}`;
    if (tds[1].dataset.signature !== signature) {
      tds[1].textContent = '';
      tds[1].appendChild(badge(live));
      tds[1].appendChild(document.createTextNode(` ${liveVersion}`));
      tds[1].dataset.signature = signature;
    }
    setCell(tds[2], m.colors?.[standby]?.version);
    setCell(tds[3], pct(m.split, 0));
    setCell(tds[4], pct(m.mirror, 0));
    setCell(tds[5], m.plan ? `${m.plan}${m.phase ? ` · ${m.phase}` : ''}` : null);
    const rps = (m.colors?.blue?.rps ?? 0) + (m.colors?.green?.rps ?? 0);
    setCell(tds[6], missing(m.colors?.blue?.rps) && missing(m.colors?.green?.rps) ? null : rate(rps));
    setCell(tds[7], pct(m.colors?.[live]?.error_rate, 2));
    setCell(tds[8], micros(m.colors?.[live]?.p99_us));
  }

  function renderFleet() {
    if (state.mode !== 'fleet') return;
    const filter = $('fleet-filter').value;
    const search = $('fleet-search').value.trim().toLowerCase();
    const body = $('fleet-rows');
    for (const [key, row] of fleetRows) {
      if (!state.samples.has(key)) {
        row.remove();
        fleetRows.delete(key);
      }
    }
    const keys = [...state.samples.keys()].sort();
    let shown = 0;
    keys.forEach((key, index) => {
      const points = state.samples.get(key);
      const m = rowFacts(key, points[points.length - 1]?.m);
      const row = fleetRow(key);
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
      const visible = !!m && matchesFilter(m, filter) && key.toLowerCase().includes(search);
      row.hidden = !visible;
      row.classList.toggle('selected', key === state.selected);
      if (!visible) return;
      shown += 1;
      fillFleetRow(row, key, m);
    });
    $('fleet-empty').hidden = shown > 0;
  }

  // === one model ===

  function render() {
    const doc = state.status;
    if (!doc) return;
    $('model').hidden = false;
    const replica = doc.replica && typeof doc.replica === 'object' ? doc.replica : null;
    const title = state.mode === 'fleet' ? state.selected : replica ? `${replica.model ?? 'model'} · replica ${replica.id ?? '?'}` : 'router';
    setText('model-title', title);
    renderSummary(doc);
    Replicas.render(doc);
    renderColors(doc);
    renderActions(doc);
    renderPlan(doc.plan);
    renderShadow(doc);
    renderTransitions(doc.transitions || []);
    renderCharts();
    renderFleet();
  }

  function renderSummary(doc) {
    const live = doc.active;
    const standby = doc.standby ?? (live === 'blue' ? 'green' : 'blue');
    setBadge('live-color', live, true);
    setText('live-version', doc.active_version ?? doc.colors?.[live]?.version);
    setBadge('standby-color', standby, false);
    setText('standby-version', doc.standby_version ?? doc.colors?.[standby]?.version);
    setText('split', pct(doc.split, 0));
    setText('mirror', pct(doc.mirror, 0));
    setText('generation', doc.generation);
    const plan = doc.plan;
    setText('plan-state-summary', plan ? plan.state : 'none');
  }

  /** Rows of the per-color table: a label and how to read each color. */
  const COLOR_ROWS = [
    ['version', (c) => c?.version],
    ['role', (c, color, doc) => `${color === doc.active ? 'live' : 'standby'}${c?.readiness ? `, ${c.readiness}` : ''}`],
    ['in flight (mirrored)', (c) => `${num(c?.in_flight)} (${num(c?.mirrored_in_flight)})`],
    ['served', (c) => num(c?.served)],
    ['requests / s (1 s)', (c, color, doc, s) => rate(s?.colors?.[color]?.rps)],
    ['error rate (1 s)', (c, color, doc, s) => pct(s?.colors?.[color]?.error_rate, 2)],
    ['p99 (1 s)', (c, color, doc, s) => micros(s?.colors?.[color]?.p99_us)],
    ['errors, measured', (c) => (c?.finished > 0 ? `${pct(c.failures / c.finished, 2)} (${num(c.failures)} of ${num(c.finished)})` : dash)],
    ['latency p50 / p90', (c) => `${micros(c?.latency?.p50_us)} / ${micros(c?.latency?.p90_us)}`],
    ['latency p99', (c) => micros(c?.latency?.p99_us)],
  ];

  function renderColors(doc) {
    const rows = $('colors-rows');
    rows.textContent = '';
    const sample = latest(selectedKey());
    for (const [label, read] of COLOR_ROWS) {
      const row = document.createElement('tr');
      cell(row, label);
      for (const color of COLORS) {
        const td = cell(row, read(doc.colors?.[color], color, doc, sample));
        td.dataset.color = color;
      }
      row.dataset.row = label;
      rows.appendChild(row);
    }
    $('colors-note').textContent = doc.measuring
      ? 'Outcomes are measured now (errors and latency count).'
      : 'Outcomes are measured while a plan runs (or when the router is built with measure): error rate and latency stay empty until then.';
  }

  /** The per-second rows only, between two status documents. */
  function renderLive() {
    if (state.status) renderColors(state.status);
  }

  function renderActions(doc) {
    renderPromoteChoices(doc);
    const plan = doc.plan;
    const finished = !plan || ['promoted', 'aborted', 'superseded'].includes(plan.state);
    $('act-plan-pause').disabled = finished || plan.state === 'paused';
    $('act-plan-resume').disabled = finished || plan.state !== 'paused';
    $('act-plan-promote').disabled = finished || plan.phase === 'post-promotion';
    $('act-plan-abort').disabled = finished;
  }

  /** The colors to promote to, the standby first; rebuilt only when they change. */
  function renderPromoteChoices(doc) {
    const select = $('promote-to');
    const standby = doc.standby ?? (doc.active === 'blue' ? 'green' : 'blue');
    const signature = [doc.active, doc.colors?.blue?.version, doc.colors?.green?.version].join('|');
    if (select.dataset.signature === signature) return;
    select.dataset.signature = signature;
    select.textContent = '';
    for (const color of [standby, doc.active]) {
      if (!COLORS.includes(color)) continue;
      const option = document.createElement('option');
      option.value = color;
      const version = doc.colors?.[color]?.version;
      option.textContent = `${color}${version ? ` (${version})` : ''}${color === doc.active ? ' · live' : ''}`;
      select.appendChild(option);
    }
  }

  /** Gates that only judge the shadow comparison, in the mirror phase. */
  const MIRROR_GATES = ['agreement', 'mismatches', 'schema_compatible', 'drift'];

  /** Why a gate of the document has no verdict now. */
  function noVerdict(gate, plan) {
    const inMirror = (plan.phase || '').startsWith('mirror');
    if (MIRROR_GATES.includes(gate.type) && !inMirror) return 'mirror phase only';
    return 'not evaluated yet';
  }

  function renderPlan(plan) {
    $('plan-none').hidden = !!plan;
    $('plan-body').hidden = !plan;
    if (!plan) return;
    setText('plan-state', plan.state);
    setText('plan-phase', plan.phase);
    setText('plan-colors', plan.stable && plan.candidate ? `${plan.stable} → ${plan.candidate}` : null);
    setText('plan-elapsed', duration(plan.elapsed_ms));
    setText('plan-baked', duration(plan.baked_ms));
    setText('plan-outcome', plan.outcome ?? 'running');
    renderGates(plan);
    renderTimeline(plan.history || []);
  }

  /** The gates of the current phase, then those the document has for others. */
  function renderGates(plan) {
    const rows = $('gates-rows');
    rows.textContent = '';
    const gates = plan.gates || [];
    const specs = plan.gate_specs || [];
    const shown = gates.map((g) => ({ ...g, ...(specs.find((s) => s.gate === g.gate) || {}), verdict: g.verdict }));
    for (const spec of specs) {
      if (!gates.some((g) => g.gate === spec.gate)) shown.push({ ...spec, verdict: null });
    }
    for (const g of shown) {
      const row = document.createElement('tr');
      cell(row, g.gate);
      cell(row, g.verdict ?? noVerdict(g, plan), g.verdict ? `verdict-${g.verdict}` : 'muted');
      cell(row, g.detail);
      cell(row, g.threshold);
      cell(row, num(g.min_sample));
      rows.appendChild(row);
    }
    if (shown.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'no gates in this phase').colSpan = 5;
      rows.appendChild(row);
    }
  }

  function renderTimeline(history) {
    const list = $('plan-timeline');
    list.textContent = '';
    for (const entry of history) {
      const item = document.createElement('li');
      const when = document.createElement('span');
      when.className = 'when';
      when.textContent = missing(entry.at_unix_ms) ? `+${duration(entry.at_ms)}` : clock(entry.at_unix_ms);
      item.appendChild(when);
      item.appendChild(document.createTextNode(entry.event ?? ''));
      list.appendChild(item);
    }
    list.scrollTop = list.scrollHeight;
  }

  function fact(list, term, value) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = missing(value) ? dash : String(value);
    list.appendChild(dt);
    list.appendChild(dd);
  }

  function renderShadow(doc) {
    const c = doc.comparison;
    const compared = c && (c.total > 0 || c.versions);
    $('shadow-none').hidden = !!compared;
    $('shadow-body').hidden = !compared;
    if (!compared) return;
    const facts = $('shadow-facts');
    facts.textContent = '';
    const side = (s) => (s ? `${s.version} (${s.color})` : null);
    fact(facts, 'primary → shadow', c.versions ? `${side(c.versions.primary)} → ${side(c.versions.shadow)}` : null);
    fact(facts, 'agreement rate', pct(c.agreement_rate, 2));
    fact(facts, 'matched / mismatched', `${num(c.matched)} / ${num(c.mismatched)}`);
    fact(facts, 'shadow errors / timeouts', `${num(c.shadow_errors)} / ${num(c.shadow_timeouts)}`);
    fact(facts, 'schema breaks', num(c.schema_breaks));
    fact(facts, 'latency p50 / p99 (primary)', `${micros(c.primary_latency?.p50_us)} / ${micros(c.primary_latency?.p99_us)}`);
    fact(facts, 'latency p50 / p99 (shadow)', `${micros(c.shadow_latency?.p50_us)} / ${micros(c.shadow_latency?.p99_us)}`);
    renderFields(c.field_mismatches || []);
    renderExemplars(doc.exemplars || []);
  }

  function renderFields(fields) {
    const rows = $('fields-rows');
    rows.textContent = '';
    for (const f of fields) {
      const row = document.createElement('tr');
      cell(row, f.field);
      cell(row, num(f.count));
      rows.appendChild(row);
    }
    if (fields.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'no field differed').colSpan = 2;
      rows.appendChild(row);
    }
  }

  /** The last mismatches' diffs, when the admin shows them. */
  function renderExemplars(exemplars) {
    $('exemplars').hidden = exemplars.length === 0;
    const box = $('exemplar-list');
    box.textContent = '';
    for (const e of exemplars) {
      const div = document.createElement('div');
      div.className = 'exemplar';
      const head = document.createElement('div');
      head.className = 'head';
      head.textContent = `${clock(e.at_unix_ms)} ${e.method ?? ''} ${e.path ?? ''} · status ${e.primary_status ?? '?'} vs ${e.shadow_status ?? '?'}`;
      div.appendChild(head);
      const table = document.createElement('table');
      table.className = 'grid';
      for (const d of e.diffs || []) {
        const row = document.createElement('tr');
        cell(row, d.path);
        cell(row, d.primary);
        cell(row, d.shadow);
        table.appendChild(row);
      }
      div.appendChild(table);
      box.appendChild(div);
    }
  }

  function renderTransitions(transitions) {
    const rows = $('transitions-rows');
    rows.textContent = '';
    for (const t of transitions.slice(-12).reverse()) {
      const row = document.createElement('tr');
      cell(row, clock(t.at_unix_ms));
      cell(row, t.generation);
      cell(row, t.kind);
      const live = cell(row, badge(t.active));
      live.appendChild(document.createTextNode(` ${t.version ?? ''}`));
      cell(row, pct(t.split, 0));
      cell(row, pct(t.mirror, 0));
      rows.appendChild(row);
    }
    if (transitions.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'no transition yet').colSpan = 6;
      rows.appendChild(row);
    }
  }

  // === charts ===

  /** Transitions and plan steps, as marks on the time axis. */
  function marks(doc) {
    const out = [];
    for (const t of doc?.transitions || []) {
      if (missing(t.at_unix_ms)) continue;
      const label = t.kind === 'split' ? `split ${pct(t.split, 0)}` : t.kind === 'mirror' ? `mirror ${pct(t.mirror, 0)}` : t.kind;
      out.push({ t: t.at_unix_ms, label, title: `${t.kind}: ${t.active} live (generation ${t.generation})` });
    }
    for (const e of doc?.plan?.history || []) {
      const event = e.event || '';
      if (missing(e.at_unix_ms)) continue;
      if (event.startsWith('gate') && !event.includes(': fail')) continue;
      if (event.startsWith('holding')) continue;
      out.push({ t: e.at_unix_ms, label: event.replace(/^phase: /, '').slice(0, 22), title: event, cls: 'plan' });
    }
    return out.sort((a, b) => a.t - b.t);
  }

  function renderCharts() {
    const box = $('charts');
    if ($('model').hidden) return;
    const points = state.samples.get(selectedKey()) || [];
    const to = points.length ? points[points.length - 1].t : Date.now();
    // The last five minutes, or since the first sample (at least a minute).
    const first = points.length ? points[0].t : to;
    const from = to - Math.min(SHOW_MS, Math.max(to - first, MIN_SHOW_MS));
    const unmeasured = state.status?.measuring ? 'no request measured yet' : 'measured while a plan runs';
    const marked = marks(state.status);
    const series = (read, cls, name) => ({ name, cls, points: points.map((p) => [p.t, read(p.m)]) });
    const perColor = (read) => COLORS.map((c) => series((m) => read(m?.colors?.[c]), c, c));
    const charts = [
      { title: 'requests / s', series: perColor((c) => c?.rps), format: (v) => rate(v), minMax: 1 },
      { title: 'error rate', series: perColor((c) => c?.error_rate), format: (v) => pct(v, 1), minMax: 0.01, empty: unmeasured },
      { title: 'p99 latency', series: perColor((c) => c?.p99_us), format: micros, minMax: 1000, empty: unmeasured },
      { title: 'agreement', series: [series((m) => m?.agreement, 'agree', 'shadow vs primary')], format: (v) => pct(v, 0), fixedMax: 1, empty: 'nothing compared' },
    ];
    while (box.children.length < charts.length) box.appendChild(document.createElement('div'));
    charts.forEach((spec, i) => Charts.line(box.children[i], { ...spec, from, to, marks: marked }));
    $('charts-note').textContent = points.length
      ? `${points.length} samples, one a second; dashed lines: transitions (amber) and plan steps (purple)`
      : 'waiting for samples';
  }

  // === actions ===

  function expected() {
    return state.status?.generation;
  }

  function fraction(inputId) {
    const value = Number($(inputId).value);
    if (!Number.isFinite(value) || value < 0 || value > 100) return null;
    return value / 100;
  }

  /** What each action button sends, and what its dialog says. */
  const ACTIONS = {
    'act-promote': () => {
      const to = $('promote-to').value;
      const version = state.status?.colors?.[to]?.version ?? to;
      return {
        path: 'promote',
        body: { to, expect_generation: expected() },
        title: `Promote ${to}`,
        text: `Make ${to} (${version}) live? Every request goes to it at once; the other color stays warm on standby.`,
      };
    },
    'act-rollback': () => ({
      path: 'rollback',
      body: { expect_generation: expected() },
      title: 'Roll back',
      text: `Make the standby color (${state.status?.standby_version ?? 'standby'}) live again?`,
    }),
    'act-split': () => {
      const f = fraction('split-input');
      if (f === null) return say('The split must be a percentage between 0 and 100.', true);
      return {
        path: 'split',
        body: { fraction: f, expect_generation: expected() },
        title: 'Set the canary split',
        text: `Send ${pct(f, 0)} of requests to the standby (${state.status?.standby_version ?? 'standby'})?`,
      };
    },
    'act-mirror': () => {
      const f = fraction('mirror-input');
      if (f === null) return say('The mirror fraction must be a percentage between 0 and 100.', true);
      return {
        path: 'mirror',
        body: { fraction: f, expect_generation: expected() },
        title: 'Set the mirror',
        text: `Copy ${pct(f, 0)} of live requests to the standby (users see only the live answers)?`,
      };
    },
    'act-plan-pause': () => planAction('plan-pause', 'Pause the plan', 'Stop advancing? Its gates keep evaluating and can still abort it.'),
    'act-plan-resume': () => planAction('plan-resume', 'Resume the plan', 'Continue advancing the plan?'),
    'act-plan-promote': () => planAction('plan-promote', 'Skip to promote', 'Promote the candidate now, skipping the remaining phases?'),
    'act-plan-abort': () => planAction('plan-abort', 'Abort the plan', 'Put the stable color back (split and mirror to zero) and stop the plan?'),
  };

  function planAction(path, title, text) {
    return { path, body: undefined, title, text, plan: true };
  }

  function ask(action) {
    if (!action) return;
    state.pending = action;
    $('confirm-title').textContent = action.title;
    $('confirm-text').textContent = action.text;
    const planRuns = ['running', 'holding', 'paused'].includes(state.status?.plan?.state);
    $('confirm-note').textContent = action.plan
      ? 'Plan controls act on the plan as it is now.'
      : `Sent as a conditional call: it applies only if the router is still at generation ${expected()}, as shown.` +
        (planRuns ? ' A plan is running: a manual change stops it (superseded).' : '');
    $('confirm').showModal();
    $('confirm-ok').focus();
  }

  async function run(action) {
    const res = await api(modelPrefix() + action.path, 'POST', action.body);
    if (res.status === 401 || res.status === 403) return refused(res.status, res.json);
    if (res.ok) {
      const doc = res.json;
      say(doc?.changed === false ? `${action.title}: already so, nothing changed.` : `${action.title}: done (generation ${doc?.generation}).`, false);
      if (doc && !missing(doc.generation)) {
        state.status = doc;
        render();
      }
      return;
    }
    if (res.status === 409 && res.json?.reason === 'conflict') {
      say(
        `Not applied: this page was stale. It showed generation ${res.json.expected_generation}, ` +
          `the router is at ${res.json.generation} (someone else changed it). The page shows the current state now: check it and try again.`,
        true,
      );
      const fresh = await api(`${modelPrefix()}status`);
      if (fresh.ok && fresh.json) {
        state.status = fresh.json;
        render();
      }
      return;
    }
    say(`${action.title} refused (${res.status || 'no answer'}): ${res.json?.error ?? 'unknown error'}`, true);
  }

  // === wiring ===

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('token-input');
    const token = input.value.trim();
    input.value = '';
    if (!token) {
      const error = $('token-error');
      error.textContent = 'Enter the admin token.';
      error.hidden = false;
      return;
    }
    connect(token);
  });

  $('sign-out').addEventListener('click', () => {
    state.token = null;
    closeStream();
    $('model').hidden = true;
    $('fleet').hidden = true;
    $('sign-out').hidden = true;
    unsay();
    $('login').hidden = false;
    setConnection('off', 'not connected');
  });

  for (const id of Object.keys(ACTIONS)) {
    $(id).addEventListener('click', () => ask(ACTIONS[id]()));
  }
  $('confirm-cancel').addEventListener('click', () => {
    state.pending = null;
    $('confirm').close();
  });
  $('confirm-ok').addEventListener('click', () => {
    const action = state.pending;
    state.pending = null;
    $('confirm').close();
    if (action) run(action);
  });
  $('message-close').addEventListener('click', unsay);
  $('fleet-filter').addEventListener('change', renderFleet);
  $('fleet-search').addEventListener('input', renderFleet);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderCharts, 150);
  });
  $('token-input').focus();
})();
