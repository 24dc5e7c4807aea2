// Small SVG charts drawn with DOM calls only: every label is set as text, never as markup.

const SVG = "http://www.w3.org/2000/svg";
const numbers = new Intl.NumberFormat();

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Horizontal bars, one per bucket ({label, count}), longest first as given.
export function barChart(buckets, { title } = {}) {
  const rowHeight = 22;
  const labelWidth = 170;
  const width = 520;
  const height = Math.max(rowHeight, buckets.length * rowHeight);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart bars",
    role: "img",
    "aria-label": title || "bar chart",
  });
  buckets.forEach((bucket, i) => {
    const y = i * rowHeight;
    const group = svg("g", { class: "bar", "data-label": bucket.label, "data-count": bucket.count });
    const label = bucket.label.length > 24 ? `${bucket.label.slice(0, 23)}…` : bucket.label;
    group.append(svg("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end" }, label));
    const barWidth = ((width - labelWidth - 70) * bucket.count) / max;
    group.append(svg("rect", { x: labelWidth, y: y + 4, width: Math.max(1, barWidth), height: rowHeight - 8, rx: 2 }));
    group.append(svg("text", { x: labelWidth + barWidth + 6, y: y + 15, class: "count" }, numbers.format(bucket.count)));
    group.append(svg("title", {}, `${bucket.label}: ${numbers.format(bucket.count)}`));
    chart.append(group);
  });
  return chart;
}

// Vertical bars over ordered buckets ({label, count}): numeric histograms and sign-ups per period.
export function columnChart(buckets, { title } = {}) {
  const width = 520;
  const height = 180;
  const bottom = 28;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const step = buckets.length ? width / buckets.length : width;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart columns",
    role: "img",
    "aria-label": title || "histogram",
  });
  const labelEvery = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((bucket, i) => {
    const barHeight = ((height - bottom - 14) * bucket.count) / max;
    const group = svg("g", { class: "bar", "data-label": bucket.label, "data-count": bucket.count });
    group.append(svg("rect", { x: i * step + 1, y: height - bottom - barHeight, width: Math.max(1, step - 2), height: barHeight }));
    if (i % labelEvery === 0) {
      group.append(svg("text", { x: i * step + step / 2, y: height - 10, "text-anchor": "middle" }, bucket.label));
    }
    group.append(svg("title", {}, `${bucket.label}: ${numbers.format(bucket.count)}`));
    chart.append(group);
  });
  return chart;
}

// A line of sizes over time, for the segment list.
export function sparkline(values, { title } = {}) {
  const width = 120;
  const height = 28;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "sparkline", role: "img", "aria-label": title || "history" });
  if (values.length < 2) return chart;
  const min = Math.min(...values);
  const span = Math.max(1, Math.max(...values) - min);
  const points = values
    .map((v, i) => `${((i * width) / (values.length - 1)).toFixed(1)},${(height - 3 - ((v - min) * (height - 6)) / span).toFixed(1)}`)
    .join(" ");
  chart.append(svg("polyline", { points, fill: "none" }));
  return chart;
}
