// The fleet view: the API's summary of one type over the chosen range as a table, in the API's order
// (most readings first) until a column header is clicked, each device linking to its own view.

import {
  api, bindControls, element, failure, formatCount, formatValue, onTokenChange, rangeBounds, rangeName,
  readSettings, setState, settingsQuery,
} from "./common.js";

const SHOWN_DEVICES = 1000; // a larger fleet shows its busiest devices until "Show all" is chosen
const table = document.getElementById("fleet-table");
const content = document.getElementById("fleet-data");
const more = document.getElementById("fleet-more");
const columns = [...table.tHead.rows[0].cells].map((cell) => cell.dataset.key);
const query = new URLSearchParams(location.search);

let settings = readSettings();
let limit = readLimit(query.get("limit"));
let rows = []; // in the API's order
let sort = null; // {key, direction: 1 ascending or -1 descending}, or null for the API's order
let current = null;

/** The most devices to show: the URL's limit, none for "all", SHOWN_DEVICES by default. */
function readLimit(text) {
  if (text === "all") return null;
  return /^[1-9][0-9]{0,8}$/.test(text ?? "") ? Number(text) : SHOWN_DEVICES;
}

async function load() {
  current?.abort();
  const controller = current = new AbortController();
  const bounds = rangeBounds(settings);
  const shown = limit === SHOWN_DEVICES ? "" : `&limit=${limit || "all"}`;
  history.replaceState(null, "", settingsQuery(settings) + shown);
  Object.assign(content.dataset, {type: settings.type, range: settings.range, start: bounds.start ?? "",
    end: bounds.end ?? ""});
  content.classList.add("loading");
  setState("loading", `Loading the fleet's ${settings.type} readings ${rangeName(settings, bounds)}\u2026`);
  try {
    const found = await api("/devices/summary/", {type: settings.type, start: bounds.start, end: bounds.end,
      limit: limit ? limit + 1 : null}, controller.signal);
    if (controller.signal.aborted) return;
    const truncated = Boolean(limit) && found.length > limit;
    rows = truncated ? found.slice(0, limit) : found;
    if (!rows.length) {
      content.hidden = true;
      setState("empty", `No device has ${settings.type} readings ${rangeName(settings, bounds)}. ` +
        "Choose a longer range or the other type.");
      return;
    }
    render();
    more.hidden = !truncated;
    document.getElementById("fleet-more-text").textContent = truncated ?
      `Showing the ${formatCount(limit)} devices with the most readings; sorting orders these only.` : "";
    content.hidden = false;
    const devices = `${formatCount(rows.length)}${truncated ? "+" : ""} device${rows.length === 1 ? "" : "s"}`;
    setState("ready", `${devices} with ${settings.type} readings ${rangeName(settings, bounds)}.`);
  } catch (error) {
    if (controller.signal.aborted) return;
    content.hidden = true;
    setState("error", failure(error));
  } finally {
    if (controller === current) content.classList.remove("loading");
  }
}

function compare(key, direction) {
  if (key === "device_uuid") {
    return (a, b) => direction * (a.device_uuid < b.device_uuid ? -1 : a.device_uuid > b.device_uuid ? 1 : 0);
  }
  return (a, b) => direction * (a[key] - b[key]);
}

function render() {
  const ordered = sort ? [...rows].sort(compare(sort.key, sort.direction)) : rows; // stable: ties keep API order
  const deviceSettings = {...settings, range: settings.range === "all" ? "year" : settings.range};
  const link = settingsQuery(deviceSettings);
  const base = `${document.body.dataset.root || ""}/dashboard/devices/`;
  const body = document.createElement("tbody");
  for (const row of ordered) {
    const cells = columns.map((key) => {
      if (key === "device_uuid") {
        return element("th", {scope: "row"},
          element("a", {href: `${base}${encodeURIComponent(row.device_uuid)}/${link}`}, row.device_uuid));
      }
      const text = key === "number_of_readings" ? formatCount(row[key]) : formatValue(row[key]);
      return element("td", {"data-value": row[key]}, text);
    });
    body.append(element("tr", {"data-device": row.device_uuid}, ...cells));
  }
  table.tBodies[0].replaceWith(body);
  for (const cell of table.tHead.rows[0].cells) {
    if (sort && cell.dataset.key === sort.key) cell.setAttribute("aria-sort", sort.direction > 0 ? "ascending" :
      "descending");
    else cell.removeAttribute("aria-sort");
  }
}

// A header cycles through ascending, descending and back to the API's order.
table.tHead.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const key = button.closest("th").dataset.key;
  if (!sort || sort.key !== key) sort = {key, direction: 1};
  else if (sort.direction === 1) sort = {key, direction: -1};
  else sort = null;
  render();
});

document.getElementById("show-all").addEventListener("click", () => {
  limit = null;
  load();
});

bindControls(settings, (next) => {
  settings = next;
  load();
});
onTokenChange(load);
load();
