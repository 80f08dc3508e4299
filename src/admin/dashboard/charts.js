'use strict';
// Small line charts drawn as inline SVG: no library, nothing loaded from
// elsewhere. `Charts.line(container, spec)` replaces the container's chart.

const Charts = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const HEIGHT = 130;
  const PAD = { left: 46, right: 8, top: 14, bottom: 18 };

  /** Creates an SVG element with attributes, appended to `parent`. */
  function svg(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, String(value));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(content, attrs, parent) {
    const node = svg('text', attrs, parent);
    node.textContent = content;
    return node;
  }

  /** A round upper bound for the y axis: 1, 2 or 5 times a power of ten. */
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function clock(ms, seconds) {
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, '0');
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return seconds ? `${hm}:${two(d.getSeconds())}` : hm;
  }

  /** A time step giving about five labels over `span` ms. */
  function timeStep(span) {
    const steps = [10, 15, 30, 60, 120, 300].map((s) => s * 1000);
    return steps.find((step) => span / step <= 6) || steps[steps.length - 1];
  }

  /**
   * Draws a chart.
   * spec.title: the heading; spec.series: [{ name, cls, points: [[t, v]] }]
   * where v may be null (a gap); spec.from / spec.to: the time window (ms);
   * spec.format: y value to text; spec.minMax: the smallest y range top;
   * spec.fixedMax: a fixed y range top; spec.marks: [{ t, label, title, cls }].
   */
  function line(container, spec) {
    container.textContent = '';
    container.classList.add('chart');
    const head = document.createElement('div');
    head.className = 'title';
    head.appendChild(document.createTextNode(spec.title));
    for (const s of spec.series) {
      const key = document.createElement('span');
      key.className = 'key';
      const swatch = document.createElement('span');
      swatch.className = `swatch ${s.cls}`;
      key.appendChild(swatch);
      key.appendChild(document.createTextNode(s.name));
      head.appendChild(key);
    }
    container.appendChild(head);

    const width = Math.max(container.clientWidth - 16, 240);
    const root = svg('svg', { viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img' }, container);
    svg('title', {}, root).textContent = spec.title;
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const span = Math.max(spec.to - spec.from, 1);
    const x = (t) => PAD.left + ((t - spec.from) / span) * plotW;

    let top = 0;
    let any = false;
    for (const s of spec.series) {
      for (const [t, v] of s.points) {
        if (v !== null && v !== undefined && Number.isFinite(v) && t >= spec.from) {
          top = Math.max(top, v);
          any = true;
        }
      }
    }
    const yMax = spec.fixedMax || niceMax(Math.max(top * 1.1, spec.minMax || 0));
    const y = (v) => PAD.top + plotH - (Math.min(v, yMax) / yMax) * plotH;

    // Grid lines and y labels at 0, half and the top.
    for (const frac of [0, 0.5, 1]) {
      const yy = y(yMax * frac);
      svg('line', { x1: PAD.left, x2: PAD.left + plotW, y1: yy, y2: yy, class: frac === 0 ? 'axis' : 'gridline' }, root);
      text(spec.format(yMax * frac), { x: PAD.left - 4, y: yy + 3, 'text-anchor': 'end', class: 'tick' }, root);
    }
    // Time labels at round times.
    const step = timeStep(span);
    for (let t = Math.ceil(spec.from / step) * step; t <= spec.to; t += step) {
      const xx = x(t);
      svg('line', { x1: xx, x2: xx, y1: PAD.top, y2: PAD.top + plotH, class: 'gridline' }, root);
      text(clock(t, step < 60000), { x: xx, y: HEIGHT - 4, 'text-anchor': 'middle', class: 'tick' }, root);
    }

    // Plan steps and transitions: a dashed line each, labels where they fit.
    let lastLabelX = -Infinity;
    for (const mark of spec.marks || []) {
      if (mark.t < spec.from || mark.t > spec.to) continue;
      const xx = x(mark.t);
      const line = svg('line', { x1: xx, x2: xx, y1: PAD.top - 2, y2: PAD.top + plotH, class: `mark ${mark.cls || ''}` }, root);
      svg('title', {}, line).textContent = mark.title || mark.label;
      if (xx - lastLabelX > 64) {
        // Right of the line, or left of it where it would not fit.
        const fits = xx + 2 + mark.label.length * 5.2 < width;
        const at = fits ? { x: xx + 2 } : { x: xx - 2, 'text-anchor': 'end' };
        const label = text(mark.label, { ...at, y: PAD.top - 4, class: `mark-label ${mark.cls || ''}` }, root);
        svg('title', {}, label).textContent = mark.title || mark.label;
        lastLabelX = xx;
      }
    }

    for (const s of spec.series) {
      let d = '';
      let pen = false;
      for (const [t, v] of s.points) {
        if (t < spec.from || v === null || v === undefined || !Number.isFinite(v)) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (d) svg('path', { d, class: `series ${s.cls}` }, root);
    }
    if (!any) {
      text(spec.empty || 'no data yet', { x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, 'text-anchor': 'middle', class: 'empty' }, root);
    }
  }

  return { line };
})();
