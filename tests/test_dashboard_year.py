"""A year of one device's readings in the dashboard: the chart is right, and how soon it is painted is reported.

The figure is printed in the terminal summary, never asserted: timings on a shared machine are noise.
"""
import math
import random
import sqlite3
import statistics
import time

import pytest
from browsing import WatchedPage, assert_device_matches_api, open_view
from serving import ProductionServer, require_nginx

from app import create_app
from models import db

pytestmark = [pytest.mark.browser, pytest.mark.production]

DEVICE = "year-device"
READINGS = 500_000
YEAR = 365 * 86_400
LOADS = 3


def year_of_readings(now):
    """One temperature reading every 63 s over the last year: seasons, days and noise, as a room would give them.

    They start an hour into the year that ends now, so the page's last-year range, ending later, holds them all.
    """
    rng = random.Random(365)
    first = now - YEAR + 3600
    step = (now - first) / READINGS
    for index in range(READINGS):
        date = first + int(index * step)
        season = 8 * math.sin(2 * math.pi * (date % YEAR) / YEAR)
        day = 3 * math.sin(2 * math.pi * (date % 86_400) / 86_400)
        yield DEVICE, "temperature", min(max(round(18 + season + day + rng.gauss(0, 1)), 0), 100), date


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python serve.py` on a SQLite file holding a year of one device's readings, loaded straight into it."""
    require_nginx()
    folder = tmp_path_factory.mktemp("dashboard-year")
    database = folder / "readings.db"
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "AUTH": "open"})
    with application.app_context():
        application.extensions["canary_schema"].ensure()
        db.engine.dispose()
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)",
                               year_of_readings(int(time.time())))
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    server = ProductionServer(folder / "serve.log", f"sqlite:///{database}")
    try:
        yield server.start()
    finally:
        server.close()


def test_year_chart_is_right_and_its_first_paint_is_reported(browser, server, request):
    painted = {"chart": [], "statistics": []}
    for load in range(LOADS):
        watched = WatchedPage(browser.new_page(), server.port)
        try:
            open_view(watched, f"/dashboard/devices/{DEVICE}/?range=year")
            # The page marks a paint in the frame after it, which may come after the "ready" state.
            watched.page.wait_for_function(" && ".join(
                f"performance.getEntriesByName('canary:{name}-painted').length > 0" for name in painted))
            for name, times in painted.items():
                times += watched.page.evaluate(f"performance.getEntriesByName('canary:{name}-painted')"
                                               ".map(entry => entry.startTime)")
            if load == 0:
                series = assert_device_matches_api(watched, DEVICE)
                assert sum(bucket["count"] for bucket in series["buckets"]) == READINGS
                watched.screenshot("device-year")
            watched.assert_clean()
        finally:
            watched.page.close()
    assert [len(times) for times in painted.values()] == [LOADS, LOADS]
    line = (f"Dashboard, device view over 1 year ({READINGS:,} readings, {len(series['buckets'])} buckets of "
            f"{series['interval']}, SQLite, serve.py), ms from navigation start in {LOADS} loads: chart first "
            f"painted {', '.join(f'{ms:.0f}' for ms in painted['chart'])} (median "
            f"{statistics.median(painted['chart']):.0f}; target <= 1 s), statistics "
            f"{', '.join(f'{ms:.0f}' for ms in painted['statistics'])}")
    print(line)
    request.node.user_properties.append(("dashboard", line))
