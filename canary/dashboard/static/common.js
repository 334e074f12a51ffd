// What the fleet and device views share: the API client and its read token, the view's settings in
// the URL (type and time range), the status line, and number and time formats in the browser's zone.

const page = document.body.dataset;
const TOKEN_KEY = "canary.readToken";
export const TOKENS_MODE = page.auth === "tokens";
// The API is asked for day and week buckets in this zone, and every time is shown in it.
export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
export const RANGES = {
  day: {seconds: 86_400, name: "in the last 24 hours"},
  week: {seconds: 7 * 86_400, name: "in the last 7 days"},
  month: {seconds: 30 * 86_400, name: "in the last 30 days"},
  year: {seconds: 365 * 86_400, name: "in the last 365 days"},
  all: {seconds: null, name: "so far"},
  custom: {seconds: null, name: "in the chosen range"},
};

/** An error answer of the API, or no answer at all (status 0), with the message to show. */
export class ApiError extends Error {
  constructor(status, body) {
    super(errorMessage(status, body));
    this.name = "ApiError";
    this.status = status;
  }
}

/** The API's error message, with the field errors of a 422 that the message does not already say. */
function errorMessage(status, body) {
  if (!body || typeof body.message !== "string") {
    return status ? `The service answered ${status} without an error message.` :
      "The service could not be reached; check the connection and try again.";
  }
  const details = Object.entries(body.errors || {})
    .map(([field, messages]) => [field, [].concat(messages).join(" ")])
    .filter(([, text]) => !body.message.includes(text))
    .map(([field, text]) => `${field}: ${text}`);
  return details.length ? `${body.message} (${details.join("; ")})` : body.message;
}

/** What to show for a failed load: the API's status and message, or what broke in the page. */
export function failure(error) {
  if (error.name !== "ApiError") return `The page failed: ${error.message}`;
  return error.status ? `The API answered ${error.status}: ${error.message}` : error.message;
}

let tokenPrompt = null; // one prompt at a time, shared by every call waiting for a token
const tokenListeners = [];

/** Ask the person for a read token (once for all waiting calls); resolves when one is entered. */
export function askToken(reason) {
  tokenPrompt ??= promptForToken(reason).finally(() => { tokenPrompt = null; });
  return tokenPrompt;
}

/** Call back when the person enters a token from the header's button, to reload the view. */
export function onTokenChange(callback) {
  tokenListeners.push(callback);
}

function promptForToken(reason) {
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason ||
    "This server needs a read token to show readings. Ask its administrator for one.";
  input.value = "";
  if (!dialog.open) dialog.showModal();
  input.focus();
  return new Promise((resolve, reject) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!/^[\x21-\x7e]+$/.test(token)) { // what an Authorization header can carry
        document.getElementById("token-reason").textContent = "A token is one word of letters, digits and " +
          "symbols, such as cnry_\u2026; check what was pasted.";
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      dialog.close();
      resolve(token);
    };
    dialog.oncancel = () => reject(new ApiError(0, {message: "A read token is needed to show readings; " +
      "choose \u201cRead token\u201d at the top of the page to give one."}));
  });
}

if (TOKENS_MODE) {
  document.getElementById("token-change").addEventListener("click", () => {
    askToken("Enter a read token. It is kept in this browser tab until the tab is closed.")
      .then(() => tokenListeners.forEach((callback) => callback()), () => {});
  });
}

/** GET an API route with query parameters (null ones left out) and return its JSON; throws ApiError. */
export async function api(path, parameters = {}, signal = undefined) {
  const url = new URL((page.root || "") + path, location.origin);
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  for (;;) {
    const headers = {Accept: "application/json"};
    let token = null;
    if (TOKENS_MODE) {
      token = sessionStorage.getItem(TOKEN_KEY) ?? await askToken();
      headers.Authorization = `Bearer ${token}`;
    }
    let response;
    try {
      response = await fetch(url, {headers, signal, cache: "no-store"});
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, null);
    }
    const body = await response.json().catch((error) => {
      if (error.name === "AbortError") throw error;
      return null;
    });
    if (response.status === 401 && TOKENS_MODE) {
      // Another call may have had a new token entered meanwhile: then just try again with it.
      if (sessionStorage.getItem(TOKEN_KEY) === token) {
        sessionStorage.removeItem(TOKEN_KEY);
        await askToken(errorMessage(401, body));
      }
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
}

/**
 * Read the view's settings from the URL: a type and a range among the page's choices, and for a
 * custom range its two bounds (without both, the last 24 hours).
 */
export function readSettings() {
  const query = new URLSearchParams(location.search);
  const choices = (id) => [...document.getElementById(id).options].map((option) => option.value);
  const type = choices("type").includes(query.get("type")) ? query.get("type") : choices("type")[0];
  const range = choices("range").includes(query.get("range")) ? query.get("range") : "day";
  const [start, end] = [epochParameter(query.get("start")), epochParameter(query.get("end"))];
  if (range !== "custom") return {type, range};
  return start === null || end === null ? {type, range: "day"} : {type, range, start, end};
}

function epochParameter(text) {
  return text !== null && /^[0-9]{1,19}$/.test(text) ? Number(text) : null;
}

/** The query string that gives these settings, for the URL bar and for links between views. */
export function settingsQuery(settings) {
  const query = new URLSearchParams({type: settings.type, range: settings.range});
  if (settings.range === "custom") {
    for (const bound of ["start", "end"]) {
      if (settings[bound] !== null && settings[bound] !== undefined) query.set(bound, settings[bound]);
    }
  }
  return `?${query}`;
}

/** The inclusive epoch-second bounds of the settings' range, ending now; null bounds for all time. */
export function rangeBounds(settings, now = Math.floor(Date.now() / 1000)) {
  if (settings.range === "custom") return {start: settings.start ?? null, end: settings.end ?? null};
  const seconds = RANGES[settings.range].seconds;
  return seconds === null ? {start: null, end: null} : {start: now - seconds, end: now};
}

/** Describe the range in words, to follow "readings": "in the last 7 days", or "from ... to ...". */
export function rangeName(settings, bounds) {
  if (settings.range !== "custom") return RANGES[settings.range].name;
  const ends = [bounds.start, bounds.end].map((time) => (time === null ? "\u2026" : formatTime(time)));
  return `from ${ends[0]} to ${ends[1]}`;
}

/**
 * Wire the type and range controls. The custom range's inputs show once "custom" is chosen and take
 * effect with their Apply button; every change calls onChange with the new settings.
 */
export function bindControls(settings, onChange) {
  const type = document.getElementById("type");
  const range = document.getElementById("range");
  const custom = document.getElementById("custom-range");
  const start = document.getElementById("custom-start");
  const end = document.getElementById("custom-end");
  type.value = settings.type;
  range.value = settings.range;
  const showCustom = () => {
    custom.hidden = range.value !== "custom";
  };
  const fillCustom = (bounds) => {
    start.value = bounds.start === null ? "" : localInputValue(bounds.start);
    end.value = bounds.end === null ? "" : localInputValue(bounds.end);
  };
  const apply = (next) => {
    settings = next;
    onChange(next);
  };
  if (settings.range === "custom") fillCustom(rangeBounds(settings));
  showCustom();
  type.addEventListener("change", () => apply({...settings, type: type.value}));
  range.addEventListener("change", () => {
    showCustom();
    if (range.value === "custom") {
      fillCustom(rangeBounds(settings));
      start.focus();
      return;
    }
    apply({type: settings.type, range: range.value});
  });
  document.getElementById("custom-range").addEventListener("submit", (event) => {
    event.preventDefault();
    apply({type: settings.type, range: "custom", start: inputEpoch(start.value), end: inputEpoch(end.value, 59)});
  });
}

function inputEpoch(value, extraSeconds = 0) {
  const time = new Date(value).getTime(); // a datetime-local value is read in the browser's zone
  return Number.isNaN(time) ? null : Math.floor(time / 1000) + extraSeconds;
}

function localInputValue(epochSeconds) {
  const date = new Date(epochSeconds * 1000);
  const pad = (number) => String(number).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Show the view's state in the status line: loading, ready, empty, unknown or error. */
export function setState(state, message) {
  const status = document.getElementById("state");
  status.dataset.state = state;
  status.textContent = message;
}

const numbers = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});
const counts = new Intl.NumberFormat(undefined);

export function formatValue(value) {
  return value === null || value === undefined ? "\u2014" : numbers.format(value);
}

export function formatCount(count) {
  return counts.format(count);
}

const timeFormat = {timeZone: TIME_ZONE, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"};
const timeFormats = {
  thisYear: new Intl.DateTimeFormat(undefined, timeFormat),
  otherYear: new Intl.DateTimeFormat(undefined, {...timeFormat, year: "numeric"}),
};
const thisYear = new Date().getFullYear();

/** Format epoch seconds in the browser's zone, with the year only when it is not this one. */
export function formatTime(epochSeconds) {
  const date = new Date(epochSeconds * 1000);
  return timeFormats[date.getFullYear() === thisYear ? "thisYear" : "otherYear"].format(date);
}

/** Make an element with attributes and children. */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}
