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
    """Assert the table lists the API's summary for the page's type and range, row for row in its order."""
    data = watched.page.locator("#fleet-data")
    summary = api_get(watched.port, "/devices/summary/", type=data.get_attribute("data-type"),
                      start=data.get_attribute("data-start"), end=data.get_attribute("data-end"))
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
    summary = assert_fleet_matches_api(watched)
    header = watched.page.locator(f"#fleet-table th[data-key='{key}'] button")
    for order in ("ascending", "descending", None):
        header.click()
        expected = summary if order is None else sorted(summary, key=lambda device: device[key],
                                                        reverse=order == "descending")
        assert [row["device"] for row in table_rows(watched.page)] == [device["device_uuid"] for device in expected]
        assert watched.page.locator("#fleet-table thead th[aria-sort]").count() == (order is not None)
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


def test_fleet_shows_the_busiest_devices_then_all_on_request(watched):
    open_view(watched, "/dashboard/?range=all&limit=2")
    page = watched.page
    summary = api_get(watched.port, "/devices/summary/", type="temperature")
    assert [row["device"] for row in table_rows(page)] == [device["device_uuid"] for device in summary[:2]]
    expect(page.locator("#fleet-more")).to_be_visible()
    page.click("#show-all")
    expect(page.locator("#fleet-more")).to_be_hidden()
    expect(page.locator("#fleet-table tbody tr")).to_have_count(len(summary))
    assert_fleet_matches_api(watched)
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
