// A small time-series line chart on a <canvas>: no library, no network.
// drawLineChart(canvas, series, {windowMs, nowMs, format}) where each series is
// {label, color, dashed, points: [[tsMs, value], ...]}.
"use strict";

function niceMax(v) {
  if (!(v > 0)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(v)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * mag >= v) return step * mag;
  }
  return 10 * mag;
}

function drawLineChart(canvas, series, opts) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 600;
  const cssH = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);

  const pad = { left: 64, right: 12, top: 10, bottom: 24 };
  const w = cssW - pad.left - pad.right;
  const h = cssH - pad.top - pad.bottom;
  const t1 = opts.nowMs;
  const t0 = t1 - opts.windowMs;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v > max) max = v;
  const yMax = niceMax(max);
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * w;
  const y = (v) => pad.top + h - (v / yMax) * h;

  // Grid and axis labels.
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7385";
  ctx.strokeStyle = "#e2e5ea";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, yy);
    ctx.lineTo(pad.left + w, yy);
    ctx.stroke();
    ctx.fillText(opts.format(v), pad.left - 6, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  // A tick a minute, or every 10 s on short windows.
  const stepMs = opts.windowMs <= 120000 ? 10000 : 60000;
  for (let m = 0; m * stepMs <= opts.windowMs; m++) {
    const t = t1 - m * stepMs;
    const xx = Math.round(x(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(xx, pad.top);
    ctx.lineTo(xx, pad.top + h);
    ctx.stroke();
    const label = stepMs < 60000 ? "-" + (m * stepMs) / 1000 + "s" : "-" + m + "m";
    ctx.fillText(m === 0 ? "now" : label, xx, pad.top + h + 6);
  }

  // One line per series, clipped to the plot area.
  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.left, pad.top, w, h);
  ctx.clip();
  for (const s of series) {
    if (s.points.length === 0) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dashed ? [5, 4] : []);
    ctx.beginPath();
    s.points.forEach(([t, v], i) => {
      if (i === 0) ctx.moveTo(x(t), y(v));
      else ctx.lineTo(x(t), y(v));
    });
    ctx.stroke();
  }
  ctx.restore();
  ctx.setLineDash([]);

  if (series.every((s) => s.points.length === 0)) {
    ctx.fillStyle = "#6b7385";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillText("no traffic yet", pad.left + w / 2, pad.top + h / 2);
  }
}
