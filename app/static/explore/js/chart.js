// Line charts over a shared x grid, drawn by the vendored uPlot (a global from its browser build),
// with the saturated stretches of each curve shaded in its colour.

/* global uPlot */

// Okabe-Ito: told apart with the common colour-vision deficiencies.
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#9A6324"];

const plottable = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

const shading = (bands) => (u) => {
  const { ctx } = u;
  const { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  for (const band of bands) {
    ctx.fillStyle = band.color;
    for (const [a, b] of band.intervals) {
      const x0 = u.valToPos(a, "x", true);
      const x1 = u.valToPos(b, "x", true);
      ctx.fillRect(x0, top, Math.max(x1 - x0, 1), height);
    }
  }
  ctx.restore();
};

export class Chart {
  constructor(element, yLabel) {
    this.element = element;
    this.yLabel = yLabel;
    this.plot = null;
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(element);
  }

  size() {
    const width = Math.max(this.element.clientWidth, 200);
    return { width, height: Math.round(Math.min(320, Math.max(200, width * 0.45))) };
  }

  /** curves: [{label, color, values, saturated: [[x0, x1], ...] or null}] */
  draw(x, curves, xLabel) {
    this.plot?.destroy();
    const bands = curves
      .filter((c) => c.saturated && c.saturated.length)
      .map((c) => ({ color: `${c.color}26`, intervals: c.saturated }));
    const options = {
      ...this.size(),
      scales: { x: { time: false } },
      axes: [{ label: xLabel }, { label: this.yLabel }],
      series: [
        { label: "x", value: (u, v) => (v == null ? "–" : v.toPrecision(4)) },
        ...curves.map((c) => ({
          label: c.label,
          stroke: c.color,
          width: 2,
          value: (u, v) => (v == null ? "–" : v.toPrecision(5)),
        })),
      ],
      cursor: { sync: { key: "explorer" } },
      hooks: { drawClear: [shading(bands)] },
    };
    const data = [x, ...curves.map((c) => c.values.map(plottable))];
    this.plot = new uPlot(options, data, this.element);
  }
}

/** The stretches of x where |gradient| < threshold, widened by half a grid step each side. */
export function saturated(x, gradient, threshold) {
  const intervals = [];
  const half = x.length > 1 ? (x[1] - x[0]) / 2 : 0;
  let start = null;
  for (let i = 0; i <= x.length; i++) {
    const g = i < x.length ? gradient[i] : null;
    const flat = typeof g === "number" && Number.isFinite(g) && Math.abs(g) < threshold;
    if (flat && start === null) start = i;
    if (!flat && start !== null) {
      intervals.push([x[start] - half, x[i - 1] + half]);
      start = null;
    }
  }
  return intervals;
}
