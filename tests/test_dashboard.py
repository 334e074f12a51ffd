"""The dashboard page in headless Chromium, served by the production command on SQLite and seeded through the API.

Every test compares what the page shows with what the API answers for the same request, and ends by
checking that the page asked no host but the server and logged no error.
"""
import datetime as dt
import math
import random
import time
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from browsing import TIME_ZONE, WatchedPage, api_get, assert_device_matches_api, open_view, post_readings
from playwright.sync_api import expect
from serving import ProductionServer, call, require_nginx

pytestmark = [pytest.mark.browser, pytest.mark.production]

HOUR, DAY = 3600, 86_400
NOW = int(time.time())
LIVING_ROOM_GAP = (NOW - 3 * DAY - 12 * HOUR, NOW - 3 * DAY)  # no readings: the chart must show a gap
LONG_ID = "36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f"  # a canonical UUID: too wide for a phone on one line
# Whether every piece of each element's text between line-break opportunities lies on one line.
WHOLE_WORDS = """nodes => nodes.every(node => [...node.querySelectorAll('*'), node].flatMap(part =>
    [...part.childNodes].filter(child => child.nodeType === Node.TEXT_NODE)).every(text => {
      const range = document.createRange();
      range.selectNodeContents(text);
      return range.getClientRects().length <= 1;
    }))"""


def seeded_readings():
    """Readings relative to now: a busy device with a gap, two tied devices, one long silent, one humidity only."""
    rng = random.Random(10)
    readings = []
    for date in range(NOW - 40 * DAY, NOW, 600):
        if LIVING_ROOM_GAP[0] <= date < LIVING_ROOM_GAP[1]:
            continue
        phase = 2 * math.pi * (date % DAY) / DAY
        readings += [("living-room", "temperature", round(21 + 3 * math.sin(phase) + rng.gauss(0, 0.7)), date),
                     ("living-room", "humidity", round(45 + 8 * math.sin(phase + 1) + rng.gauss(0, 2)), date)]
    readings += [("kitchen:2", "temperature", rng.randint(15, 30), NOW - index * 1800) for index in range(480)]
    for device in ("garage", "attic.sensor_1"):  # as many readings each: the API orders them by name
        readings += [(device, "temperature", rng.randint(0, 40), NOW - index * 600) for index in range(120)]
    readings += [("cellar", "temperature", rng.randint(8, 14), NOW - 2 * 365 * DAY + index * HOUR)
                 for index in range(50)]
    readings += [("bathroom", "humidity", rng.randint(40, 95), NOW - index * 2000) for index in range(200)]
    readings += [(LONG_ID, "humidity", rng.randint(30, 60), NOW - index * 3000) for index in range(90)]
    return [{"device_uuid": device, "type": kind, "value": min(max(value, 0), 100), "date_created": date}
            for device, kind, value, date in readings]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python serve.py` in open mode on a SQLite file, seeded through the API; one for the module."""
    require_nginx()
    folder = tmp_path_factory.mktemp("dashboard-open")
    server = ProductionServer(folder / "serve.log", f"sqlite:///{folder}/readings.db")
    try:
        server.start()
        post_readings(server.port, seeded_readings())
        yield server
    finally:
        server.close()


@pytest.fixture
def watched(browser, server):
    page = browser.new_page()
    yield WatchedPage(page, server.port)
    page.close()


def table_rows(page):
    return page.eval_on_selector_all("#fleet-table tbody tr", """rows => rows.map(row => ({
        device: row.dataset.device, link: row.querySelector('a').getAttribute('href'),
        values: [...row.querySelectorAll('td')].map(cell => Number(cell.dataset.value))}))""")


def summary_values(device):
    return [device[key] for key in ("number_of_readings", "max_reading_value", "median_reading_value",
                                    "mean_reading_value", "quartile_1_value", "quartile_3_value")]


def assert_fleet_matches_api(watched):
    """Assert the table lists the API's summary for the page's type, range, order and page, row for row."""
    data = watched.page.locator("#fleet-data")
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "ready")
    parameters = {name: data.get_attribute(f"data-{name}") for name in ("type", "start", "end", "sort", "order",
                                                                         "offset", "limit")}
    summary = api_get(watched.port, "/devices/summary/", **{key: value for key, value in parameters.items() if value})
    rows = table_rows(watched.page)
    assert [row["device"] for row in rows] == [device["device_uuid"] for device in summary]
    assert [row["values"] for row in rows] == [summary_values(device) for device in summary]
    return summary


def test_fleet_table_lists_the_apis_devices_in_its_order(watched):
    open_view(watched, "/dashboard/?range=all")
    summary = assert_fleet_matches_api(watched)
    assert len(summary) == 5 and summary[2:4] == sorted(summary[2:4], key=lambda device: device["device_uuid"])
    for row in table_rows(watched.page):
        assert row["link"] == f"/dashboard/devices/{quote(row['device'], safe='')}/?type=temperature&range=year"
    assert watched.page.locator("#token-dialog").count() == 0  # open mode asks for nothing
    assert all(authorization is None for _, authorization in watched.api_requests())
    watched.screenshot("fleet")
    watched.assert_clean()


@pytest.mark.parametrize("key", ["mean_reading_value", "device_uuid", "quartile_1_value", "number_of_readings"])
def test_fleet_table_sorts_by_a_clicked_column_and_back(watched, key):
    open_view(watched, "/dashboard/?range=all")
    default = assert_fleet_matches_api(watched)
    header = watched.page.locator(f"#fleet-table th[data-key='{key}'] button")
    data = watched.page.locator("#fleet-data")
    for order in ("asc", "desc", ""):
        header.click()
        expect(data).to_have_attribute("data-order", order)  # the API sorts, then the table shows its answer
        shown = assert_fleet_matches_api(watched)
        if order:
            assert [row[key] for row in shown] == sorted((row[key] for row in shown), reverse=order == "desc")
        else:
            assert shown == default
        assert watched.page.locator("#fleet-table thead th[aria-sort]").count() == bool(order)
    watched.assert_clean()


def test_fleet_type_and_range_switches_update_the_table(watched):
    open_view(watched, "/dashboard/?range=all")
    page = watched.page
    for control, value in (("#type", "humidity"), ("#range", "day"), ("#type", "temperature"), ("#range", "week")):
        page.select_option(control, value)
        expect(page.locator("#fleet-data")).to_have_attribute(f"data-{control[1:]}", value)
        expect(page.locator("#state")).to_have_attribute("data-state", "ready")
        assert_fleet_matches_api(watched)
    assert page.url.endswith("?type=temperature&range=week")
    watched.assert_clean()


def test_fleet_pages_through_the_devices_a_page_at_a_time(watched):
    open_view(watched, "/dashboard/?range=all&per_page=2")
    page, data = watched.page, watched.page.locator("#fleet-data")
    summary = api_get(watched.port, "/devices/summary/", type="temperature")
    shown = []
    for offset in (0, 2, 4):
        expect(data).to_have_attribute("data-offset", str(offset))
        shown += assert_fleet_matches_api(watched)
        assert page.locator("#page-previous").is_disabled() == (offset == 0)
        if offset < 4:
            page.click("#page-next")
    assert page.locator("#page-next").is_disabled() and shown == summary  # every device, once, in order
    expect(page.locator("#page-text")).to_have_text(f"Devices 5–5 of {len(summary)}")
    assert "page=3" in page.url and "per_page=2" in page.url
    page.click("#page-previous")
    expect(data).to_have_attribute("data-offset", "2")
    watched.assert_clean()


def test_views_at_phone_width_fit_and_break_device_ids_only_between_words(watched):
    watched.page.set_viewport_size({"width": 390, "height": 844})
    open_view(watched, "/dashboard/?range=all&type=humidity")
    page = watched.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the page itself does not overflow
    cells = page.locator("#fleet-table tbody th")
    assert cells.count() == 3 and page.eval_on_selector_all("#fleet-table tbody th", WHOLE_WORDS)
    heights = page.eval_on_selector_all("#fleet-table tbody th", "cells => cells.map(cell => cell.clientHeight)")
    assert max(heights) > min(heights)  # the UUID wraps, at its hyphens
    page.locator(".table-scroll").evaluate("node => { node.scrollLeft = node.scrollWidth; }")
    last = page.locator("#fleet-table thead th").last.bounding_box()
    assert 0 <= last["x"] and last["x"] + last["width"] <= 390  # the last column scrolls into view, whole
    watched.screenshot("fleet-phone", window=True)
    open_view(watched, f"/dashboard/devices/{LONG_ID}/?range=week&type=humidity")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.eval_on_selector_all("h1 .device-name", WHOLE_WORDS)
    assert page.locator("h1 .device-name").bounding_box()["height"] > 40  # on more than one line
    watched.screenshot("device-phone", window=True)
    watched.assert_clean()


def test_fleet_link_opens_the_device_view(watched):
    open_view(watched, "/dashboard/?range=week")
    watched.page.get_by_role("link", name="kitchen:2", exact=True).click()
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "ready")
    assert watched.page.url.endswith("/dashboard/devices/kitchen%3A2/?type=temperature&range=week")
    expect(watched.page.locator("h1")).to_have_text("kitchen:2")
    assert_device_matches_api(watched, "kitchen:2")
    watched.assert_clean()


def test_device_chart_and_statistics_match_the_api(watched):
    open_view(watched, "/dashboard/devices/living-room/?type=temperature&range=week")
    series = assert_device_matches_api(watched, "living-room")
    gap = [bucket for bucket in series["buckets"] if LIVING_ROOM_GAP[0] <= bucket["start"] < LIVING_ROOM_GAP[1] - HOUR]
    assert gap and not any(bucket["count"] for bucket in gap)  # so the page has a gap to draw
    assert watched.page.locator(".chart .mean path").count() >= 2
    series_calls = [url for url, _ in watched.api_requests() if "/series/" in url]
    assert len(series_calls) == 1 and f"tz={quote(TIME_ZONE, safe='')}" in series_calls[0]
    watched.screenshot("device")
    watched.assert_clean()


def local_input(epoch_seconds):
    return dt.datetime.fromtimestamp(epoch_seconds, ZoneInfo(TIME_ZONE)).strftime("%Y-%m-%dT%H:%M")


def test_device_type_and_range_switches_update_chart_and_statistics(watched):
    open_view(watched, "/dashboard/devices/living-room/?type=temperature&range=day")
    page, view = watched.page, watched.page.locator("#view")
    assert_device_matches_api(watched, "living-room")
    for control, value in (("#type", "humidity"), ("#range", "month"), ("#type", "temperature"), ("#range", "year")):
        page.select_option(control, value)
        expect(view).to_have_attribute(f"data-{control[1:]}", value)
        expect(page.locator("#state")).to_have_attribute("data-state", "ready")
        assert assert_device_matches_api(watched, "living-room")["type"] == page.input_value("#type")
    start, end = NOW - 10 * DAY, NOW - 8 * DAY
    page.select_option("#range", "custom")
    page.fill("#custom-start", local_input(start))
    page.fill("#custom-end", local_input(end))
    page.click("#custom-apply")
    expect(view).to_have_attribute("data-start", str(start - start % 60))
    expect(page.locator("#state")).to_have_attribute("data-state", "ready")
    assert view.get_attribute("data-end") == str(end - end % 60 + 59)
    assert_device_matches_api(watched, "living-room")
    watched.assert_clean()


@pytest.mark.parametrize("query", ["range=custom", "range=custom&start=100", "range=custom&end=x&start=1",
                                   "range=fortnight", "type=pressure&range=week"])
def test_device_view_reads_what_it_can_of_its_address(watched, query):
    open_view(watched, f"/dashboard/devices/living-room/?{query}")
    view = watched.page.locator("#view")
    expected = {"type": "temperature", "range": "week" if "week" in query else "day"}
    assert {name: view.get_attribute(f"data-{name}") for name in expected} == expected
    assert watched.page.url.endswith(f"?type={expected['type']}&range={expected['range']}")
    assert_device_matches_api(watched, "living-room")
    watched.assert_clean()


def test_device_range_without_readings_says_so(watched):
    open_view(watched, "/dashboard/devices/cellar/?range=day", state="empty")
    expect(watched.page.locator("#state")).to_contain_text("No temperature readings in the last 24 hours")
    expect(watched.page.locator("#device-data")).to_be_hidden()
    assert watched.page.locator("circle.point").count() == 0
    watched.screenshot("device-empty")
    watched.assert_clean()


def test_unknown_device_says_so(watched):
    assert api_get(watched.port, "/devices/never-seen/readings/", limit=1) == []
    open_view(watched, "/dashboard/devices/never-seen/?range=year", state="unknown")
    expect(watched.page.locator("#state")).to_contain_text("“never-seen” has sent any readings")
    expect(watched.page.locator("#device-data")).to_be_hidden()
    watched.screenshot("device-unknown")
    watched.assert_clean()


@pytest.mark.parametrize("path, api_path", [
    ("/dashboard/devices/living-room/", "/devices/living-room/readings/series/?type=temperature&interval=1m"),
    ("/dashboard/", "/devices/summary/?type=temperature"),
])
def test_api_error_shows_its_message(watched, path, api_path):
    status, error, _ = call(watched.port, "GET", f"{api_path}&start=200&end=100")
    assert status == 422
    open_view(watched, f"{path}?range=custom&start=200&end=100", state="error")
    expect(watched.page.locator("#state")).to_contain_text(f"The API answered 422: {error['message']}")
    expect(watched.page.locator("#state")).to_contain_text(error["errors"]["start"][0])
    watched.screenshot("error-device" if "devices" in path else "error-fleet")
    watched.assert_clean(failed_statuses={422})
