'use strict';
// A replica's view: its sync with the store, and a table of the live
// replicas' reports, from the status document's `replica` object (there
// only when the admin was built for a replica of a store). Ids, versions
// and errors come from the store, written by any replica: every value goes
// into the page as text, never as markup. `Replicas.render(doc)` draws the
// section, or hides it when the document has no `replica`.

const Replicas = (() => {
  const COLORS = ['blue', 'green'];
  const dash = '—';
  const $ = (id) => document.getElementById(id);
  const missing = (v) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v));
  const text = (v) => (missing(v) ? dash : String(v));

  function seconds(ms) {
    if (missing(ms)) return dash;
    const s = Math.floor(ms / 1000);
    return s < 60 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  /** Sets a fact's text and its look (`ok`, `warn`, `bad` or none). */
  function fact(id, value, look) {
    const node = $(id);
    node.textContent = text(value);
    node.className = look ? `value ${look}` : 'value';
  }

  function tag(label, look, title) {
    const span = document.createElement('span');
    span.className = `tag ${look}`;
    span.textContent = label;
    if (title) span.title = title;
    return span;
  }

  function cell(row, ...parts) {
    const td = document.createElement('td');
    for (const part of parts) {
      if (part instanceof Node) td.appendChild(part);
      else if (part !== null && part !== undefined) td.appendChild(document.createTextNode(part));
    }
    row.appendChild(td);
    return td;
  }

  /**
   * The version most replicas hold in `color`, the one a row is compared
   * with; a tie goes to this replica's own version when it is one of the
   * tied, else there is none (nothing is marked).
   */
  function reference(reports, color, own) {
    const counts = new Map();
    for (const r of reports) {
      const v = r?.[color]?.version;
      if (typeof v === 'string') counts.set(v, (counts.get(v) || 0) + 1);
    }
    let best = null;
    let most = 0;
    let tied = false;
    for (const [v, n] of counts) {
      if (n > most) [best, most, tied] = [v, n, false];
      else if (n === most) tied = true;
    }
    if (!tied) return best;
    return counts.get(own) === most ? own : null;
  }

  function renderSync(r, doc) {
    $('replica-model').textContent = missing(r.model) ? '' : `model ${r.model}`;
    fact('replica-id', r.id);
    const look = { store: 'ok', snapshot: 'warn' };
    fact('replica-source', r.source, look[r.source] || 'bad');
    fact('replica-ready', r.ready === true ? 'yes' : r.ready === false ? 'no' : null, r.ready ? 'ok' : 'bad');
    if (r.connected === true) fact('replica-connection', 'connected', 'ok');
    else if (r.connected === false) fact('replica-connection', `unreachable for ${seconds(r.stale_ms)}`, 'bad');
    else fact('replica-connection', null);
    fact('replica-revision', r.applied_revision);
    fact('replica-generation', r.generation ?? doc.generation);
    const error = typeof r.last_error === 'string' && r.last_error !== '' ? r.last_error : null;
    $('replica-error').hidden = error === null;
    $('replica-error-text').textContent = error ?? '';
  }

  /** One row per live replica, by id; what is behind or differs is marked. */
  function renderFleet(r, doc) {
    const reports = (Array.isArray(r.replicas) ? r.replicas : []).filter((x) => x && typeof x === 'object');
    reports.sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const revisions = [r.applied_revision, ...reports.map((x) => x.applied_revision)].filter((v) => typeof v === 'number');
    const newest = revisions.length > 0 ? Math.max(...revisions) : null;
    const refs = {};
    for (const c of COLORS) refs[c] = reference(reports, c, doc.colors?.[c]?.version);
    const rows = $('replicas-rows');
    rows.textContent = '';
    for (const x of reports) {
      const row = document.createElement('tr');
      row.dataset.replica = text(x.id);
      const self = typeof x.id === 'string' && x.id === r.id;
      cell(row, text(x.id), self ? ' ' : null, self ? tag('this replica', 'self') : null);
      const behind = typeof x.applied_revision === 'number' && newest !== null && x.applied_revision < newest;
      cell(row, text(x.applied_revision), behind ? ' ' : null,
        behind ? tag('behind', 'warn', `revision ${newest} is applied elsewhere`) : null);
      let differs = false;
      for (const c of COLORS) {
        const side = x[c] || {};
        const odd = refs[c] !== null && side.version !== refs[c];
        differs ||= odd;
        const mark = side.ready === true ? tag('✓', 'ok', 'ready') : side.ready === false ? tag('✗ not ready', 'bad') : null;
        const td = cell(row, text(side.version), mark ? ' ' : null, mark);
        td.dataset.color = c;
        if (odd) {
          td.classList.add('odd');
          td.title = `the other replicas hold ${refs[c]}`;
        }
      }
      cell(row, x.ready === true ? 'stored state' : x.ready === false ? 'default (not ready)' : dash);
      cell(row, missing(x.last_seen_ms_ago) ? dash : `${seconds(x.last_seen_ms_ago)} ago`);
      row.classList.toggle('behind', behind);
      row.classList.toggle('differs', differs);
      row.classList.toggle('self', self);
      rows.appendChild(row);
    }
    if (reports.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'no replica report read yet').colSpan = 6;
      rows.appendChild(row);
    }
  }

  function render(doc) {
    const r = doc?.replica;
    const shown = !!r && typeof r === 'object';
    $('replica-card').hidden = !shown;
    if (!shown) return;
    renderSync(r, doc);
    renderFleet(r, doc);
  }

  return { render };
})();
