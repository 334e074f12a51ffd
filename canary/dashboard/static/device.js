// The device view: the series of one type over the chosen range as a chart, then the range's six
// statistics, each from its own API route.

import {
  TIME_ZONE, api, bindControls, failure, formatCount, formatTime, formatValue, onTokenChange, rangeBounds,
  rangeName, readSettings, setState, settingsQuery,
} from "./common.js";
import {chooseInterval, drawChart, intervalWidth, widerInterval} from "./chart.js";

const device = document.body.dataset.device;
const readings = `/devices/${encodeURIComponent(device)}/readings/`;
const METRICS = ["min", "max", "median", "mean", "mode", "quartiles"];
// A bucket of fewer readings shows no band from its lowest to its highest: the chart widens its buckets
// until the median bucket with readings holds at least this many.
const READINGS_PER_BUCKET = 3;
const view = document.getElementById("view");
const chart = document.getElementById("chart");
const content = document.getElementById("device-data");
const fleetLink = document.getElementById("fleet-link");

let settings = readSettings();
let shown = null; // the series and interval on the chart, redrawn when the page is resized
let known = null; // whether the device has any reading at all, asked once
let current = null; // the AbortController of the load in progress
const marked = new Set(); // the paints already marked: only the first of each counts

async function load() {
  current?.abort();
  const controller = current = new AbortController();
  const bounds = rangeBounds(settings);
  let interval = chooseInterval(bounds.start ?? 0, bounds.end ?? 0);
  history.replaceState(null, "", settingsQuery(settings));
  fleetLink.search = settingsQuery(settings);
  Object.assign(view.dataset, {type: settings.type, range: settings.range, start: bounds.start ?? "",
    end: bounds.end ?? "", interval: interval.label, tz: TIME_ZONE});
  view.classList.add("loading");
  setState("loading", `Loading ${settings.type} readings ${rangeName(settings, bounds)}\u2026`);
  try {
    known ??= api(readings, {limit: 1}).then((found) => found.length > 0, (error) => {
      known = null;
      throw error;
    });
    const seriesOf = (width) => api(`${readings}series/`, {
      type: settings.type, start: bounds.start, end: bounds.end, interval: width.label, tz: TIME_ZONE,
    }, controller.signal);
    let [exists, series] = await Promise.all([known, seriesOf(interval)]);
    if (controller.signal.aborted) return;
    const typical = medianCount(series.buckets);
    const wider = typical && typical < READINGS_PER_BUCKET &&
      widerInterval(interval, Math.ceil(READINGS_PER_BUCKET / typical));
    if (wider) {
      interval = wider;
      view.dataset.interval = interval.label;
      series = await seriesOf(interval);
      if (controller.signal.aborted) return;
    }
    if (!exists) {
      content.hidden = true;
      setState("unknown", `No device \u201c${device}\u201d has sent any readings. Check the id, or come back ` +
        "once it has posted its first reading.");
      return;
    }
    const count = series.buckets.reduce((total, bucket) => total + bucket.count, 0);
    if (count === 0) {
      content.hidden = true;
      setState("empty", `No ${settings.type} readings ${rangeName(settings, bounds)}. ` +
        "Choose a longer range or the other type.");
      return;
    }
    content.hidden = false;
    shown = {series, interval};
    drawChart(chart, series, interval);
    document.getElementById("chart-title").textContent = `${capitalized(settings.type)}, per ${interval.name}`;
    document.getElementById("chart-caption").textContent = `Each ${interval.name}: the mean reading (line) and ` +
      `the lowest to the highest (band). Gaps have no readings. Times in ${TIME_ZONE}.`;
    markPaint("chart");
    clearStatistics();
    const statistics = await Promise.all(METRICS.map((metric) => api(`${readings}${metric}/`,
      {type: settings.type, start: bounds.start, end: bounds.end}, controller.signal)));
    if (controller.signal.aborted) return;
    showStatistics(Object.fromEntries(METRICS.map((metric, index) => [metric, statistics[index]])));
    markPaint("statistics");
    const buckets = series.buckets.filter((bucket) => bucket.count > 0).length;
    setState("ready", `${formatCount(count)} ${settings.type} readings ${rangeName(settings, bounds)}, ` +
      `in ${formatCount(buckets)} of ${formatCount(series.buckets.length)} buckets of ${intervalWidth(interval)}.`);
  } catch (error) {
    if (controller.signal.aborted) return;
    content.hidden = true;
    setState("error", failure(error));
  } finally {
    if (controller === current) view.classList.remove("loading");
  }
}

/** The median count of the buckets that hold readings, or 0 when none does. */
function medianCount(buckets) {
  const counts = buckets.map((bucket) => bucket.count).filter((count) => count > 0).sort((a, b) => a - b);
  return counts.length ? counts[Math.floor((counts.length - 1) / 2)] : 0;
}

function capitalized(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Mark when the first chart with data, then its statistics, have been painted: the page's speed. */
function markPaint(name) {
  if (marked.has(name)) return;
  marked.add(name);
  requestAnimationFrame(() => setTimeout(() => performance.mark(`canary:${name}-painted`), 0));
}

function clearStatistics() {
  for (const metric of METRICS) {
    const value = document.getElementById(`stat-${metric}`);
    value.textContent = "\u2026";
    for (const name of Object.keys(value.dataset)) delete value.dataset[name];
  }
  document.getElementById("stat-min-at").textContent = "";
  document.getElementById("stat-max-at").textContent = "";
}

function showStatistics(statistics) {
  for (const metric of ["min", "max", "median", "mean", "mode"]) {
    const value = document.getElementById(`stat-${metric}`);
    value.dataset.value = statistics[metric].value;
    value.textContent = formatValue(statistics[metric].value);
  }
  for (const metric of ["min", "max"]) {
    document.getElementById(`stat-${metric}-at`).textContent = `at ${formatTime(statistics[metric].date_created)}`;
  }
  const quartiles = document.getElementById("stat-quartiles");
  quartiles.dataset.quartile_1 = statistics.quartiles.quartile_1;
  quartiles.dataset.quartile_3 = statistics.quartiles.quartile_3;
  quartiles.textContent = `${formatValue(statistics.quartiles.quartile_1)} \u2013 ` +
    `${formatValue(statistics.quartiles.quartile_3)}`;
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    if (shown && !content.hidden) drawChart(chart, shown.series, shown.interval);
  }, 150);
});

bindControls(settings, (next) => {
  settings = next;
  load();
});
onTokenChange(load);
load();
