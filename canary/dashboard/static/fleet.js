// The fleet view: the API's summary of one type over the chosen range, a page of devices at a time,
// sorted by the API (most readings first, or by a clicked column), each device linking to its own view.
// Only the page on screen is ever asked for, so a fleet of 100,000 devices costs no more than one of 100.

import {
  api, bindControls, element, failure, formatCount, formatValue, onTokenChange, rangeBounds, rangeName,
  readSettings, setState, settingsQuery,
} from "./common.js";

const PER_PAGE = 100;
const table = document.getElementById("fleet-table");
const content = document.getElementById("fleet-data");
const pager = document.getElementById("fleet-pager");
const previous = document.getElementById("page-previous");
const next = document.getElementById("page-next");
const columns = [...table.tHead.rows[0].cells].map((cell) => cell.dataset.key);
const query = new URLSearchParams(location.search);

let settings = readSettings();
const perPage = readCount(query.get("per_page"), PER_PAGE, 1);
let page = readCount(query.get("page"), 1, 1);
let sort = readSort(query.get("sort"), query.get("order")); // {key, order} or null for the API's own order
let current = null;

function readCount(text, fallback, least) {
  return /^[1-9][0-9]{0,8}$/.test(text ?? "") && Number(text) >= least ? Number(text) : fallback;
}

function readSort(key, order) {
  return columns.includes(key) && ["asc", "desc"].includes(order) ? {key, order} : null;
}

function address() {
  const extra = new URLSearchParams();
  if (sort) extra.set("sort", sort.key), extra.set("order", sort.order);
  if (page > 1) extra.set("page", page);
  if (perPage !== PER_PAGE) extra.set("per_page", perPage);
  const rest = extra.toString();
  return settingsQuery(settings) + (rest ? `&${rest}` : "");
}

async function load() {
  current?.abort();
  const controller = current = new AbortController();
  const bounds = rangeBounds(settings);
  history.replaceState(null, "", address());
  Object.assign(content.dataset, {type: settings.type, range: settings.range, start: bounds.start ?? "",
    end: bounds.end ?? "", sort: sort?.key ?? "", order: sort?.order ?? "", offset: (page - 1) * perPage,
    limit: perPage});
  content.classList.add("loading");
  setState("loading", `Loading the fleet's ${settings.type} readings ${rangeName(settings, bounds)}\u2026`);
  try {
    // One row more than the page shows tells whether there is a next page.
    const found = await api("/devices/summary/", {type: settings.type, start: bounds.start, end: bounds.end,
      sort: sort?.key, order: sort?.order, offset: (page - 1) * perPage, limit: perPage + 1}, controller.signal);
    if (controller.signal.aborted) return;
    if (!found.length && page > 1) {
      page = 1; // the range shrank under this page: start over
      load();
      return;
    }
    if (!found.length) {
      content.hidden = true;
      setState("empty", `No device has ${settings.type} readings ${rangeName(settings, bounds)}. ` +
        "Choose a longer range or the other type.");
      return;
    }
    const rows = found.slice(0, perPage);
    render(rows);
    const first = (page - 1) * perPage + 1;
    const last = first + rows.length - 1;
    const more = found.length > perPage;
    pager.hidden = page === 1 && !more;
    previous.disabled = page === 1;
    next.disabled = !more;
    document.getElementById("page-text").textContent =
      `Devices ${formatCount(first)}\u2013${formatCount(last)}${more ? "" : ` of ${formatCount(last)}`}`;
    content.hidden = false;
    setState("ready", `Devices ${formatCount(first)}\u2013${formatCount(last)}${more ? " and more" : ""} with ` +
      `${settings.type} readings ${rangeName(settings, bounds)}.`);
  } catch (error) {
    if (controller.signal.aborted) return;
    content.hidden = true;
    setState("error", failure(error));
  } finally {
    if (controller === current) content.classList.remove("loading");
  }
}

function render(rows) {
  const deviceSettings = {...settings, range: settings.range === "all" ? "year" : settings.range};
  const link = settingsQuery(deviceSettings);
  const base = `${document.body.dataset.root || ""}/dashboard/devices/`;
  const body = document.createElement("tbody");
  for (const row of rows) {
    const cells = columns.map((key) => {
      if (key === "device_uuid") {
        return element("th", {scope: "row"},
          element("a", {href: `${base}${encodeURIComponent(row.device_uuid)}/${link}`}, ...breakable(row.device_uuid)));
      }
      const text = key === "number_of_readings" ? formatCount(row[key]) : formatValue(row[key]);
      return element("td", {"data-value": row[key]}, text);
    });
    body.append(element("tr", {"data-device": row.device_uuid}, ...cells));
  }
  table.tBodies[0].replaceWith(body);
  for (const cell of table.tHead.rows[0].cells) {
    if (sort && cell.dataset.key === sort.key) cell.setAttribute("aria-sort", sort.order === "asc" ? "ascending" :
      "descending");
    else cell.removeAttribute("aria-sort");
  }
}

/** A device id as text nodes with a line-break opportunity after each '-', '_', '.' and ':'. */
function breakable(text) {
  return text.split(/(?<=[-_.:])/).flatMap((part, index) => index ? [document.createElement("wbr"), part] : [part]);
}

// A header cycles through ascending, descending and back to the API's own order; the API sorts the whole fleet.
table.tHead.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const key = button.closest("th").dataset.key;
  if (!sort || sort.key !== key) sort = {key, order: "asc"};
  else if (sort.order === "asc") sort = {key, order: "desc"};
  else sort = null;
  page = 1;
  load();
});

previous.addEventListener("click", () => {
  page = Math.max(1, page - 1);
  load();
});
next.addEventListener("click", () => {
  page += 1;
  load();
});

bindControls(settings, (changed) => {
  settings = changed;
  page = 1;
  load();
});
onTokenChange(load);
load();
