// The arrival curve: admissions per minute as an SVG column chart, drawn with DOM calls so the
// page needs no inline styles, plus the same figures in words and in a table.

import { h, s } from "./dom.js";
import { clock, count, plural } from "./format.js";

const WIDTH = 800;
const HEIGHT = 260;
const MARGIN = { top: 14, right: 12, bottom: 30, left: 46 };
const MINUTE = 60000;
// Beyond this many columns they get too thin to read: group minutes into wider buckets.
const MOST_COLUMNS = 120;
const BUCKETS = [1, 2, 5, 10, 15, 30, 60];
// A quiet spell after the last arrival is shown up to now, while it is recent.
const RECENT_MS = 60 * MINUTE;
const SHORTEST_MINUTES = 30;
const WIDEST_COLUMN = 40;

/**
 * Columns from the first minute with arrivals to the last (or to now, if that is recent),
 * with the quiet minutes in between as zeros. Returns {size, columns: [{at: Date, admitted}]}.
 */
export function columns(arrivals, now = Date.now()) {
  const points = (arrivals ?? [])
    .map((point) => ({ at: Date.parse(point.minute), admitted: Number(point.admitted) || 0 }))
    .filter((point) => !Number.isNaN(point.at))
    .sort((a, b) => a.at - b.at);
  if (!points.length) return { size: 1, columns: [] };
  let first = Math.floor(points[0].at / MINUTE) * MINUTE;
  let last = Math.floor(points[points.length - 1].at / MINUTE) * MINUTE;
  const current = Math.floor(now / MINUTE) * MINUTE;
  if (current > last && current - last <= RECENT_MS) last = current;
  // At least half an hour across, so a handful of early arrivals still reads as a timeline.
  first = Math.min(first, last - (SHORTEST_MINUTES - 1) * MINUTE);
  const span = (last - first) / MINUTE + 1;
  const size = BUCKETS.find((minutes) => span / minutes <= MOST_COLUMNS) ?? 60;
  const start = Math.floor(first / (size * MINUTE)) * size * MINUTE;
  const slots = Math.floor((last - start) / (size * MINUTE)) + 1;
  const totals = new Array(slots).fill(0);
  for (const point of points) {
    totals[Math.min(slots - 1, Math.floor((point.at - start) / (size * MINUTE)))] += point.admitted;
  }
  return { size, columns: totals.map((admitted, i) => ({ at: new Date(start + i * size * MINUTE), admitted })) };
}

/** A round step for the vertical axis, so gridlines fall on 1, 2, 5, 10, 20... */
function step(top) {
  const rough = top / 4;
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(rough, 1)));
  return [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= rough) ?? magnitude * 10;
}

function unit(size) {
  return size === 1 ? "minute" : size === 60 ? "hour" : `${size} minutes`;
}

/** Redraws the chart in `figure` (which holds svg#arrivals-chart, p#arrivals-summary, table body). */
export function drawArrivals({ svg, summary, tableBody, tableHead }, arrivals, now = Date.now()) {
  const { size, columns: data } = columns(arrivals, now);
  const total = data.reduce((sum, column) => sum + column.admitted, 0);
  const busiest = data.reduce((best, column) => (column.admitted > (best?.admitted ?? 0) ? column : best), null);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const ceiling = Math.max(busiest?.admitted ?? 0, 1);
  const gap = step(ceiling);
  const top = Math.ceil(ceiling / gap) * gap;
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;

  const parts = [];
  for (let value = 0; value <= top; value += gap) {
    parts.push(
      s("line", { class: value === 0 ? "axis" : "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value) }),
      s("text", { class: "tick", x: MARGIN.left - 8, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" }, count(value)),
    );
  }
  if (!data.length) {
    parts.push(
      s("text", { class: "empty", x: MARGIN.left + plotWidth / 2, y: MARGIN.top + plotHeight / 2, "text-anchor": "middle" }, "No arrivals yet"),
    );
  }
  const slot = data.length ? plotWidth / data.length : plotWidth;
  const barWidth = Math.min(WIDEST_COLUMN, Math.max(1, slot * (data.length > 60 ? 0.9 : 0.75)));
  const labelEvery = Math.max(1, Math.ceil(data.length / 8));
  data.forEach((column, i) => {
    const x = MARGIN.left + i * slot + (slot - barWidth) / 2;
    if (column.admitted > 0) {
      parts.push(
        s(
          "rect",
          {
            class: column === busiest ? "column busiest" : "column",
            x: x.toFixed(2),
            y: y(column.admitted).toFixed(2),
            width: barWidth.toFixed(2),
            height: (plotHeight - (y(column.admitted) - MARGIN.top)).toFixed(2),
          },
          s("title", {}, `${clock(column.at)}: ${plural(column.admitted, "arrival")}`),
        ),
      );
    }
    if (i % labelEvery === 0) {
      parts.push(
        s("text", { class: "tick", x: (MARGIN.left + i * slot + slot / 2).toFixed(2), y: HEIGHT - 8, "text-anchor": "middle" }, clock(column.at)),
      );
    }
  });
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.replaceChildren(s("title", { id: "arrivals-chart-title" }, `Arrivals per ${unit(size)}`), ...parts);

  const arrived = data.filter((column) => column.admitted > 0);
  summary.textContent = arrived.length
    ? `${plural(total, "arrival")} between ${clock(arrived[0].at)} and ${clock(new Date(arrived[arrived.length - 1].at.getTime() + size * MINUTE))}. ` +
      `Busiest ${unit(size)}: ${clock(busiest.at)}, with ${plural(busiest.admitted, "arrival")}.`
    : "No delegates have arrived yet. The chart fills in as tickets are scanned at the doors.";
  tableHead.textContent = `Arrivals per ${unit(size)}`;
  tableBody.replaceChildren(
    ...arrived.map((column) => h("tr", {}, h("th", { scope: "row" }, clock(column.at)), h("td", { class: "n" }, count(column.admitted)))),
  );
}
