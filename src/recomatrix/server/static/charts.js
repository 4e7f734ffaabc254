// Tiny SVG charts for the dashboard: a time-series line chart and a log-scale bar chart.
// Each chart redraws itself completely from the data it is given (a few dozen points).

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round axis maximum at or above `value`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((v) => v >= value);
}

function legend(container, entries) {
  const box = container.querySelector(".legend") || container.appendChild(document.createElement("div"));
  box.className = "legend";
  box.replaceChildren(
    ...entries.map(({ name, colour, value, text }) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.dataset.series = name;
      item.dataset.value = Number.isFinite(value) ? String(value) : "";
      const swatch = document.createElement("i");
      swatch.style.background = colour;
      const label = document.createElement("b");
      label.textContent = text;
      item.append(swatch, `${name} `, label);
      return item;
    }),
  );
}

function plotArea(container, height, label) {
  const width = Math.max(240, Math.round(container.querySelector(".plot")?.clientWidth || container.clientWidth || 320));
  const plot = container.querySelector(".plot") || container.appendChild(document.createElement("div"));
  plot.className = "plot";
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", height, role: "img", "aria-label": label });
  plot.replaceChildren(root);
  return { root, width };
}

/**
 * Lines over the last `windowS` seconds. `series`: [{name, points: [{t, v}]}], v null for a
 * gap; `format(v)` writes values for the axis and the legend (which shows each latest value).
 */
export function lineChart(container, { series, now, windowS = 180, format = String, label = "" }) {
  const height = 150;
  const { root, width } = plotArea(container, height, label);
  const left = 56, right = 8, top = 8, bottom = 20;
  const values = series.flatMap((s) => s.points.map((p) => p.v)).filter(Number.isFinite);
  const yMax = niceCeiling(Math.max(0, ...values));
  const x = (t) => left + ((t - (now - windowS)) / windowS) * (width - left - right);
  const y = (v) => top + (1 - v / yMax) * (height - top - bottom);
  for (const fraction of [0, 0.5, 1]) {
    const v = yMax * fraction;
    root.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid-line" }));
    root.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
  }
  root.append(svg("text", { x: left, y: height - 4, class: "axis" }, `−${Math.round(windowS / 60)} min`));
  root.append(svg("text", { x: width - right, y: height - 4, "text-anchor": "end", class: "axis" }, "now"));
  series.forEach((s, i) => {
    const colour = s.colour || PALETTE[i % PALETTE.length];
    let d = "";
    let pen = "M";
    for (const p of s.points) {
      if (!Number.isFinite(p.v) || p.t < now - windowS) {
        pen = "M";
        continue;
      }
      d += `${pen}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = "L";
    }
    if (d) root.append(svg("path", { d, fill: "none", stroke: colour, "stroke-width": 2, "stroke-linejoin": "round" }));
    const last = [...s.points].reverse().find((p) => Number.isFinite(p.v));
    if (last) root.append(svg("circle", { cx: x(last.t), cy: y(last.v), r: 3, fill: colour }));
  });
  legend(container, series.map((s, i) => {
    const last = [...s.points].reverse().find((p) => Number.isFinite(p.v));
    return { name: s.name, colour: s.colour || PALETTE[i % PALETTE.length], value: last?.v, text: last ? format(last.v) : "–" };
  }));
  container.dataset.samples = String(values.length);
}

/**
 * Horizontal bars on a log axis, two per row (e.g. p50 and p99 latency per stage).
 * `rows`: [{name, values: [a, b]}]; `bars`: the two value names; values in `unit`s.
 */
export function logBarChart(container, { rows, bars, format = String, label = "", floor = 0.01 }) {
  const rowHeight = 30;
  const height = 24 + rows.length * rowHeight;
  const { root, width } = plotArea(container, height, label);
  const left = 72, right = 28; // room for the last tick's label
  const finite = rows.flatMap((r) => r.values).filter((v) => v > 0 && Number.isFinite(v));
  const top = Math.max(1, 10 ** Math.ceil(Math.log10(Math.max(floor * 10, ...finite))));
  const span = Math.log10(top) - Math.log10(floor);
  const x = (v) => left + (Math.max(0, Math.log10(Math.max(v, floor)) - Math.log10(floor)) / span) * (width - left - right);
  for (let tick = floor; tick <= top * 1.0001; tick *= 10) {
    root.append(svg("line", { x1: x(tick), x2: x(tick), y1: 14, y2: height, class: "grid-line" }));
    root.append(svg("text", { x: x(tick), y: 10, "text-anchor": "middle", class: "axis" }, format(tick)));
  }
  rows.forEach((row, r) => {
    const y0 = 20 + r * rowHeight;
    root.append(svg("text", { x: 0, y: y0 + 15, class: "bar-label" }, row.name));
    row.values.forEach((v, b) => {
      if (!(v > 0)) return;
      const barY = y0 + 3 + b * 11;
      root.append(svg("rect", { x: left, y: barY, width: Math.max(1, x(v) - left), height: 10, rx: 2,
        fill: PALETTE[b], "data-stage": row.name, "data-quantile": bars[b], "data-value": v }));
    });
  });
  legend(container, bars.map((name, b) => ({ name, colour: PALETTE[b], value: NaN, text: "" })));
  container.dataset.samples = String(finite.length);
}
