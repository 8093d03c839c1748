import { html, useEffect, useRef } from "../vendor/htm-preact.module.js";

// A sparkline on a canvas: a few hundred of these must draw in milliseconds (the overview with 500 functions).
export function Spark({ values, color = "#2563eb", label }) {
  const ref = useRef(null);
  useEffect(() => {
    const c = ref.current;
    if (!c) return;
    const dpr = window.devicePixelRatio || 1;
    const w = 96, h = 22;
    if (c.width !== w * dpr) {
      c.width = w * dpr;
      c.height = h * dpr;
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const vs = values || [];
    let max = 0;
    for (const v of vs) if (v !== null && v > max) max = v;
    ctx.strokeStyle = "#d1d5db";
    ctx.beginPath();
    ctx.moveTo(0, h - 0.5);
    ctx.lineTo(w, h - 0.5);
    ctx.stroke();
    if (vs.length < 2 || max <= 0) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.25;
    ctx.beginPath();
    let pen = false;
    vs.forEach((v, i) => {
      const x = (i / (vs.length - 1)) * w;
      if (v === null) {
        pen = false;
        return;
      }
      const y = h - 1 - (v / max) * (h - 3);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }, [values]);
  return html`<canvas ref=${ref} class="spark" role="img" aria-label=${label}></canvas>`;
}

// A uPlot chart over time. series: [{label, values, color}]; markers: [{time, text}] drawn as vertical lines.
export function Chart({ title, times, series, markers = [], unit = "", height = 180 }) {
  const box = useRef(null);
  const plot = useRef(null);
  const marks = useRef(markers);
  marks.current = markers;
  const data = [times, ...series.map((s) => s.values)];
  useEffect(() => {
    if (!box.current || !window.uPlot) return;
    const width = Math.max(280, box.current.clientWidth - 8);
    const opts = {
      title,
      width,
      height,
      scales: { x: { time: true } },
      axes: [{}, { values: (u, vals) => vals.map((v) => (v === null ? "" : `${+v.toFixed(3)}${unit}`)), size: 60 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, spanGaps: false }))],
      hooks: {
        draw: [
          (u) => {
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "#f59e0b";
            ctx.lineWidth = 1.5 * (window.devicePixelRatio || 1);
            for (const m of marks.current) {
              const x = u.valToPos(m.time, "x", true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
    plot.current = new window.uPlot(opts, data, box.current);
    return () => {
      plot.current.destroy();
      plot.current = null;
    };
  }, [series.length, title]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  });
  return html`<div class="chart" ref=${box}></div>`;
}
