"""Headless Debian Chromium driven by Playwright: launching it, and watching what a page asks for and logs."""
import os
import re
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from playwright.sync_api import expect
from serving import call

CHROMIUM = Path("/usr/bin/chromium")
# No first-run work, no background connections of the browser's own: every request comes from the page.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIME_ZONE = "America/New_York"  # the browser's zone: the page must send it to the API and show times in it
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "dashboard"
TIMEOUT_MS = 30_000  # generous: the machine is shared, and the suite runs servers of its own alongside
expect.set_options(timeout=TIMEOUT_MS)
STATISTICS = ("min", "max", "median", "mean", "mode", "quartiles")
# The bucket widths the page chooses from, narrowest first; it takes the first giving at most 500 buckets.
INTERVALS = ["1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d", "1w", "4w", "13w", "52w"]
MAX_BUCKETS = 500
READINGS_PER_BUCKET = 3
# Chromium logs each answer of 400 or more as a console error; a test that expects some says which.
FAILED_RESOURCE = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


def require_browser():
    """Skip the test when Chromium is missing, or fail it where CANARY_REQUIRE_BROWSER says it must run."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"the dashboard's browser tests need {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("CANARY_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)


def launch(playwright, user_data_dir):
    """Start Chromium on a fresh profile, in TIME_ZONE."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        timezone_id=TIME_ZONE, locale="en-US", viewport={"width": 1200, "height": 800})


def post_readings(port, readings, headers=None):
    """Store readings through the API, in batches of at most 10,000."""
    for first in range(0, len(readings), 10_000):
        status, body, _ = call(port, "POST", "/readings/", readings[first:first + 10_000], headers)
        assert status == 201, body


def api_get(port, path, headers=None, **parameters):
    """GET an API route with query parameters left out when empty; return the JSON, which must be a 200."""
    query = urlencode({name: value for name, value in parameters.items() if value not in (None, "")})
    status, body, _ = call(port, "GET", f"{path}?{query}", headers=headers)
    assert status == 200, body
    return body


def open_view(watched, path, state="ready"):
    """Load a dashboard path and wait until its status line reaches a state."""
    watched.page.goto(f"http://127.0.0.1:{watched.port}{path}")
    expect(watched.page.locator("#state")).to_have_attribute("data-state", state)


class WatchedPage:
    """A page whose requests, console errors and uncaught exceptions are recorded."""

    def __init__(self, page, port):
        self.page, self.port = page, port
        page.set_default_timeout(TIMEOUT_MS)
        self.requests = []  # (url, authorization header or None)
        self.errors = []
        page.on("request", lambda request: self.requests.append((request.url, request.headers.get("authorization"))))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def api_requests(self):
        """Return the (url, authorization) of every request to an API route, in the order they were sent."""
        return [(url, auth) for url, auth in self.requests if not urlsplit(url).path.startswith("/dashboard/")]

    def assert_clean(self, failed_statuses=()):
        """Assert every request went to this server on 127.0.0.1 and nothing was logged as an error.

        `failed_statuses`: API answers of those statuses that the test provoked, which Chromium logs.
        """
        here = ("http", "127.0.0.1", self.port)
        elsewhere = [url for url, _ in self.requests
                     if (urlsplit(url).scheme, urlsplit(url).hostname, urlsplit(url).port) != here]
        assert elsewhere == [], "the page asked another host"
        unexpected = [text for text in self.errors
                      if not (match := FAILED_RESOURCE.search(text)) or int(match[1]) not in failed_statuses]
        assert unexpected == [], "the page logged errors"

    def screenshot(self, name, window=False):
        """Save the page's content (or the whole window, dialogs included) as tests/artifacts/dashboard/<name>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if window:
            self.page.screenshot(path=str(path))
        else:
            self.page.locator("body").screenshot(path=str(path))
        return path


SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def seconds_of(interval):
    return int(interval[:-1]) * SECONDS[interval[-1]]


def expected_interval(port, device, parameters):
    """The narrowest of INTERVALS whose series, as the API cuts it, has at most MAX_BUCKETS buckets, widened
    while the median bucket with readings holds fewer than READINGS_PER_BUCKET (docs/dashboard.md)."""
    for interval in INTERVALS:
        status, body, _ = call(port, "GET", f"/devices/{quote(device, safe='')}/readings/series/?"
                               + urlencode({**parameters, "interval": interval}))
        if status == 200 and len(body["buckets"]) <= MAX_BUCKETS:
            break
    else:
        raise AssertionError("no interval fits")
    counts = sorted(bucket["count"] for bucket in body["buckets"] if bucket["count"])
    typical = counts[(len(counts) - 1) // 2] if counts else 0
    if typical and typical < READINGS_PER_BUCKET:
        factor = -(-READINGS_PER_BUCKET // typical)
        return next((wider for wider in INTERVALS if seconds_of(wider) >= seconds_of(interval) * factor), interval)
    return interval


def runs(buckets):
    """Count the runs of consecutive non-empty buckets: each is drawn as a line of its own."""
    return sum(1 for index, bucket in enumerate(buckets) if bucket["count"] and (
        index == 0 or not buckets[index - 1]["count"]))


def assert_device_matches_api(watched, device):
    """Assert the chart's points and the statistics are the API's for the page's type, range, interval and zone."""
    page, view = watched.page, watched.page.locator("#view")
    settings = {name: view.get_attribute(f"data-{name}") for name in ("type", "start", "end", "interval", "tz")}
    assert settings["tz"] == TIME_ZONE
    path = f"/devices/{quote(device, safe='')}/readings/"
    bounds = {"type": settings["type"], "start": settings["start"], "end": settings["end"]}
    assert settings["interval"] == expected_interval(watched.port, device, bounds)
    series = api_get(watched.port, f"{path}series/", **settings)
    filled = [bucket for bucket in series["buckets"] if bucket["count"]]
    points = page.eval_on_selector_all("circle.point", "nodes => nodes.map(node => ({...node.dataset}))")
    assert [{key: float(value) for key, value in point.items()} for point in points] == [
        {key: bucket[key] for key in ("start", "end", "count", "mean", "min", "max")} for bucket in filled]
    assert page.locator(".chart .mean path").count() + page.locator(".chart .band rect").count() == runs(
        series["buckets"])
    for metric in STATISTICS:
        answer = api_get(watched.port, f"{path}{metric}/", **bounds)
        shown = page.locator(f"#stat-{metric}")
        if metric == "quartiles":
            assert float(shown.get_attribute("data-quartile_1")) == answer["quartile_1"]
            assert float(shown.get_attribute("data-quartile_3")) == answer["quartile_3"]
        else:
            assert float(shown.get_attribute("data-value")) == answer["value"]
    return series
