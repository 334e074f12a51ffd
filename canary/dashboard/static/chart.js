// The device chart: the bucket width for a range, and the SVG of a series: the mean as a line over
// a band from min to max, broken wherever a bucket is empty, on time axes in the browser's zone.

import {TIME_ZONE, formatCount, formatTime, formatValue} from "./common.js";

export const MAX_BUCKETS = 500;
const MINUTE = 60, HOUR = 3600, DAY = 86_400, WEEK = 7 * DAY;
// Bucket widths from narrowest to widest: the first that gives at most MAX_BUCKETS is used.
const INTERVALS = [
  [MINUTE, "1m", "minute"], [5 * MINUTE, "5m", "5 minutes"], [15 * MINUTE, "15m", "15 minutes"],
  [30 * MINUTE, "30m", "30 minutes"], [HOUR, "1h", "hour"], [3 * HOUR, "3h", "3 hours"],
  [6 * HOUR, "6h", "6 hours"], [12 * HOUR, "12h", "12 hours"], [DAY, "1d", "day"], [WEEK, "1w", "week"],
  [4 * WEEK, "4w", "4 weeks"], [13 * WEEK, "13w", "13 weeks"], [52 * WEEK, "52w", "52 weeks"],
];

/**
 * The narrowest bucket width that cuts start..end into at most MAX_BUCKETS buckets: its label for the
 * API, and its name as in "per hour" or "per 3 hours".
 */
export function chooseInterval(start, end) {
  for (const [seconds, label, name] of INTERVALS) {
    if (bucketCount(seconds, label, start, end) <= MAX_BUCKETS) return {seconds, label, name};
  }
  const weeks = 52 * Math.ceil((end - start) / (52 * WEEK) / (MAX_BUCKETS - 2));
  return {seconds: weeks * WEEK, label: `${weeks}w`, name: `${weeks} weeks`};
}

/**
 * The narrowest width at least `factor` times as wide as an interval, or null if there is none: for a series
 * whose buckets hold too few readings to show a band from their lowest to their highest.
 */
export function widerInterval(interval, factor) {
  const found = INTERVALS.find(([seconds]) => seconds >= interval.seconds * factor);
  return found ? {seconds: found[0], label: found[1], name: found[2]} : null;
}

/** The width of a bucket in words: "1 hour", "3 hours". */
export function intervalWidth(interval) {
  return /^[0-9]/.test(interval.name) ? interval.name : `1 ${interval.name}`;
}

function bucketCount(seconds, label, start, end) {
  if (/[dw]$/.test(label)) {
    // Day and week buckets start at local midnight: allow for that alignment and for clock changes.
    return Math.ceil((end - start) / seconds) + 2;
  }
  return Math.floor(end / seconds) - Math.floor(start / seconds) + 1; // aligned to the epoch
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** Round numbers for about `count` ticks covering lo..hi. */
function valueTicks(lo, hi, count = 5) {
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const rough = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= rough);
  const ticks = [];
  for (let tick = Math.floor(lo / step); tick <= Math.ceil(hi / step); tick += 1) {
    ticks.push(Number((tick * step).toFixed(6)));
  }
  return ticks;
}

// Tick steps in the browser's calendar, narrowest first: [about how long, unit, how many units].
const TICK_STEPS = [
  [MINUTE, "minute", 1], [5 * MINUTE, "minute", 5], [15 * MINUTE, "minute", 15], [30 * MINUTE, "minute", 30],
  [HOUR, "hour", 1], [3 * HOUR, "hour", 3], [6 * HOUR, "hour", 6], [12 * HOUR, "hour", 12],
  [DAY, "day", 1], [2 * DAY, "day", 2], [WEEK, "week", 1], [2 * WEEK, "week", 2], [30 * DAY, "month", 1],
  [91 * DAY, "month", 3], [182 * DAY, "month", 6], [365 * DAY, "year", 1], [5 * 365 * DAY, "year", 5],
  [10 * 365 * DAY, "year", 10], [50 * 365 * DAY, "year", 50],
];

/** Tick times (epoch seconds) at whole local minutes, hours, days, weeks, months or years. */
function timeTicks(first, last, most) {
  const [, unit, count] = TICK_STEPS.find(([seconds]) => (last - first) / seconds <= most) ?? TICK_STEPS.at(-1);
  const date = new Date(first * 1000); // local-time methods use the browser's zone, the one sent as tz
  date.setSeconds(0, 0);
  if (unit === "minute") date.setMinutes(Math.floor(date.getMinutes() / count) * count);
  else date.setMinutes(0);
  if (unit === "hour") date.setHours(Math.floor(date.getHours() / count) * count);
  else if (unit !== "minute") date.setHours(0);
  if (unit === "week") date.setDate(date.getDate() - ((date.getDay() + 6) % 7)); // back to Monday
  if (unit === "month" || unit === "year") date.setDate(1);
  if (unit === "month") date.setMonth(Math.floor(date.getMonth() / count) * count);
  if (unit === "year") date.setFullYear(Math.floor(date.getFullYear() / count) * count, 0, 1);
  const ticks = [];
  while (date.getTime() / 1000 <= last && ticks.length < 200) {
    if (date.getTime() / 1000 >= first) ticks.push(date.getTime() / 1000);
    if (unit === "minute") date.setMinutes(date.getMinutes() + count);
    else if (unit === "hour") date.setHours(date.getHours() + count);
    else if (unit === "day") date.setDate(date.getDate() + count);
    else if (unit === "week") date.setDate(date.getDate() + 7 * count);
    else if (unit === "month") date.setMonth(date.getMonth() + count);
    else date.setFullYear(date.getFullYear() + count);
  }
  return {ticks, unit};
}

const tickFormats = {
  clock: new Intl.DateTimeFormat(undefined, {timeZone: TIME_ZONE, hour: "numeric", minute: "2-digit"}),
  day: new Intl.DateTimeFormat(undefined, {timeZone: TIME_ZONE, month: "short", day: "numeric"}),
  month: new Intl.DateTimeFormat(undefined, {timeZone: TIME_ZONE, month: "short"}),
  year: new Intl.DateTimeFormat(undefined, {timeZone: TIME_ZONE, year: "numeric"}),
};

function tickLabel(time, unit) {
  const date = new Date(time * 1000);
  const midnight = date.getHours() === 0 && date.getMinutes() === 0;
  if (unit === "minute" || unit === "hour") return tickFormats[midnight ? "day" : "clock"].format(date);
  if (unit === "day" || unit === "week") return tickFormats.day.format(date);
  if (unit === "month") return tickFormats[date.getMonth() === 0 ? "year" : "month"].format(date);
  return tickFormats.year.format(date);
}

/** Split the buckets into runs of consecutive non-empty ones: each run is drawn apart, so gaps stay gaps. */
function runs(buckets) {
  const found = [];
  let run = [];
  for (const bucket of buckets) {
    if (bucket.count > 0) {
      run.push(bucket);
    } else if (run.length) {
      found.push(run);
      run = [];
    }
  }
  if (run.length) found.push(run);
  return found;
}

/**
 * Draw a series into the container: one circle.point per non-empty bucket, carrying the bucket's
 * start, end, count, mean, min and max as data attributes, and a tooltip on hover.
 */
export function drawChart(container, series, interval) {
  const width = Math.max(container.clientWidth, 320);
  const height = Math.round(Math.min(380, Math.max(240, width * 0.42)));
  const margin = {top: 14, right: 18, bottom: 30, left: 44};
  const plot = {width: width - margin.left - margin.right, height: height - margin.top - margin.bottom};
  const buckets = series.buckets;
  const filled = buckets.filter((bucket) => bucket.count > 0);
  const first = buckets[0].start, last = buckets.at(-1).end;
  const yTicks = valueTicks(Math.min(...filled.map((b) => b.min)), Math.max(...filled.map((b) => b.max)));
  const [low, high] = [yTicks[0], yTicks.at(-1)];
  const x = (time) => margin.left + ((time - first) / (last - first)) * plot.width;
  const y = (value) => margin.top + plot.height - ((value - low) / (high - low)) * plot.height;
  const middle = (bucket) => x((bucket.start + bucket.end) / 2);
  const f = (number) => number.toFixed(1);

  const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img",
    "aria-label": `${series.type}: mean per ${interval.name} with its min-max band, ${filled.length} of ` +
      `${buckets.length} buckets with readings`});
  const grid = svg("g", {class: "grid"});
  for (const tick of yTicks) {
    grid.append(svg("line", {x1: margin.left, x2: width - margin.right, y1: f(y(tick)), y2: f(y(tick))}),
      svg("text", {x: margin.left - 8, y: f(y(tick)), class: "y-label"}, formatValue(tick)));
  }
  const {ticks, unit} = timeTicks(first, last, Math.max(2, Math.floor(plot.width / 75)));
  const axis = svg("g", {class: "x-axis"});
  axis.append(svg("line", {x1: margin.left, x2: width - margin.right, y1: margin.top + plot.height,
    y2: margin.top + plot.height, class: "baseline"}));
  for (const tick of ticks) {
    const at = f(x(tick));
    axis.append(svg("line", {x1: at, x2: at, y1: margin.top + plot.height, y2: margin.top + plot.height + 5}),
      svg("text", {x: at, y: height - 8, class: "x-label"}, tickLabel(tick, unit)));
  }

  const bands = svg("g", {class: "band"});
  const lines = svg("g", {class: "mean"});
  const bucketWidth = plot.width / buckets.length;
  for (const run of runs(buckets)) {
    if (run.length === 1) {
      const [bucket] = run, barWidth = Math.min(Math.max(bucketWidth, 2), 8);
      bands.append(svg("rect", {x: f(middle(bucket) - barWidth / 2), width: f(barWidth), y: f(y(bucket.max)),
        height: f(Math.max(y(bucket.min) - y(bucket.max), 1))}));
      continue;
    }
    const top = run.map((bucket) => `${f(middle(bucket))},${f(y(bucket.max))}`);
    const bottom = run.map((bucket) => `${f(middle(bucket))},${f(y(bucket.min))}`).reverse();
    bands.append(svg("path", {d: `M${top.join("L")}L${bottom.join("L")}Z`}));
    lines.append(svg("path", {d: `M${run.map((bucket) => `${f(middle(bucket))},${f(y(bucket.mean))}`).join("L")}`}));
  }
  const points = svg("g", {class: filled.length > 150 ? "points dense" : "points"});
  for (const bucket of filled) {
    points.append(svg("circle", {class: "point", cx: f(middle(bucket)), cy: f(y(bucket.mean)), r: 2.5,
      "data-start": bucket.start, "data-end": bucket.end, "data-count": bucket.count,
      "data-mean": bucket.mean, "data-min": bucket.min, "data-max": bucket.max}));
  }
  const cursor = svg("line", {class: "cursor", y1: margin.top, y2: margin.top + plot.height, visibility: "hidden"});
  const overlay = svg("rect", {class: "overlay", x: margin.left, y: margin.top, width: plot.width,
    height: plot.height});
  chart.append(grid, axis, bands, lines, points, cursor, overlay);
  container.replaceChildren(chart, tooltipFor(container, chart, overlay, cursor, filled, middle, y));
}

function tooltipFor(container, chart, overlay, cursor, filled, middle, y) {
  const tooltip = document.createElement("div");
  tooltip.className = "tooltip";
  tooltip.hidden = true;
  const centres = filled.map(middle);
  let shown = null;
  overlay.addEventListener("pointermove", (event) => {
    const box = chart.getBoundingClientRect();
    const at = ((event.clientX - box.left) / box.width) * chart.viewBox.baseVal.width;
    let index = centres.findIndex((centre) => centre >= at);
    if (index === -1) index = centres.length - 1;
    if (index > 0 && at - centres[index - 1] < centres[index] - at) index -= 1;
    const bucket = filled[index];
    if (shown !== bucket) {
      shown = bucket;
      tooltip.replaceChildren(
        Object.assign(document.createElement("strong"), {textContent: `${formatTime(bucket.start)} \u2013 ` +
          `${formatTime(bucket.end)}`}),
        Object.assign(document.createElement("span"), {textContent: `mean ${formatValue(bucket.mean)} \u00b7 ` +
          `min ${formatValue(bucket.min)} \u00b7 max ${formatValue(bucket.max)} \u00b7 ` +
          `${formatCount(bucket.count)} reading${bucket.count === 1 ? "" : "s"}`}));
    }
    cursor.setAttribute("x1", centres[index]);
    cursor.setAttribute("x2", centres[index]);
    cursor.setAttribute("visibility", "visible");
    tooltip.hidden = false;
    const scale = box.width / chart.viewBox.baseVal.width;
    const left = Math.min(centres[index] * scale + 12, box.width - tooltip.offsetWidth - 4);
    tooltip.style.left = `${Math.max(left, 4)}px`;
    tooltip.style.top = `${Math.max(y(bucket.max) * scale - tooltip.offsetHeight - 8, 4)}px`;
  });
  overlay.addEventListener("pointerleave", () => {
    tooltip.hidden = true;
    cursor.setAttribute("visibility", "hidden");
  });
  return tooltip;
}
