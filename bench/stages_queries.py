"""Query stages: statistics, the streamed listing, series and the fleet summary, each against its raw query."""
import os
import statistics
import time

import fixtures
import launchers
import load
import process_memory
from table import Row, ms, note

METRICS = ("min", "max", "median", "mean", "mode", "quartiles")
DAY = 86_400
FLEET_DEVICES = 10_000
FLEET_READINGS = 50


def timed_query(database, sql, params):
    """Return how long one query takes, rows fetched, in seconds."""
    began = time.perf_counter()
    database.query(sql, params)
    return time.perf_counter() - began


def compare_with_raw(api, database, path, sql, params, requests):
    """Time a GET and a raw query alternately, so that noise hits both alike; return the p50 of each in seconds."""
    database.query(sql, params)  # warms the cache
    load.timed_gets(api.port, path, 1)
    app_times, raw_times = [], []
    for _ in range(requests):
        raw_times.append(timed_query(database, sql, params))
        app_times += load.timed_gets(api.port, path, 1)
    return statistics.median(app_times), statistics.median(raw_times)


def history_filter(window):
    """Return the WHERE clause and parameters selecting the history device's temperatures, in a window if given."""
    sql = " FROM readings WHERE device_uuid = ? AND type = ?"
    params = (fixtures.HISTORY_DEVICE, "temperature")
    if window:
        sql += " AND date_created BETWEEN ? AND ?"
        params += window
    return sql, params


def bench_metrics(api, database, settings):
    """Time every metric end to end over the whole history and a 1-day window, against the raw GROUP BY value."""
    middle = fixtures.HISTORY_START + fixtures.YEAR // 2
    spans = {"whole history": None, "1-day window": (middle, middle + DAY)}
    rows = []
    for span, window in spans.items():
        where, params = history_filter(window)
        sql = "SELECT value, COUNT(*)" + where + " GROUP BY value"  # the histogram every metric needs
        readings = sum(count for _, count in database.query(sql, params))
        query = "?type=temperature" + (f"&start={window[0]}&end={window[1]}" if window else "")
        for metric in METRICS:
            note(f"metric {metric}, {span}: {settings.metric_requests} requests")
            path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/{metric}/{query}"
            p50, raw = compare_with_raw(api, database, path, sql, params, settings.metric_requests)
            measured = f"{ms(p50)} p50 · raw GROUP BY {ms(raw)} · {p50 / raw:.2f}×"
            label = f"Metric {metric}: {span} ({readings:,} readings)"
            if window:
                rows.append(Row(label, measured, "≤ 5 ms p50", p50 <= 0.005))
            else:
                rows.append(Row(label, measured, "≤ 1.5× raw", p50 <= 1.5 * raw))
    return rows


def wait_folded(database, began, limit=300):
    """Wait until the server has folded every stored reading into its rollups; return the seconds from `began`."""
    while time.monotonic() - began < limit:
        if database.pending_readings() == 0:
            return time.monotonic() - began
        time.sleep(0.2)
    raise RuntimeError(f"readings were still pending {limit} s after the server started")


def bench_streaming(api, readings):
    """Stream the whole history listing and report the largest growth of a worker's peak RSS.

    The growth is split into heap (RssAnon) and file-backed pages such as a memory-mapped database.
    """
    note("streaming the full listing")
    with process_memory.PeakRss(api.worker_pids()) as peak:
        received, rows, seconds, complete = load.stream_get(api.port, f"/devices/{fixtures.HISTORY_DEVICE}/readings/")
    whole = complete and rows == readings
    return [Row(f"Streaming: full listing, {readings // 1_000_000}M readings",
                f"{peak.describe()} (heap {peak.anon_kb / 1024:+.1f}, files {peak.files_kb / 1024:+.1f}) · "
                f"{rows:,} rows, {received / 1e6:.1f} MB in {seconds:.1f} s" + ("" if whole else " · INCOMPLETE"),
                "≤ 50 MB RSS growth", peak.growth_kb <= 50 * 1024 and whole)]


def bench_series(api, database, settings):
    """Time the series over the whole year at 1-day buckets and over one day at 5-minute buckets."""
    middle = fixtures.HISTORY_START + fixtures.YEAR // 2
    cases = [  # label, query, raw bucket width, window, target
        ("1 year at 1-day buckets, UTC", "interval=1d", DAY, None, "≤ 1.5× raw"),
        ("1 year at 1-day buckets, Europe/London", "interval=1d&tz=Europe/London", DAY, None, ""),
        ("1-day window at 5-minute buckets", f"interval=5m&start={middle}&end={middle + DAY}", 300,
         (middle, middle + DAY), "≤ 10 ms p50"),
    ]
    rows = []
    for label, query, width, window, target in cases:
        note(f"series, {label}: {settings.metric_requests} requests")
        where, params = history_filter(window)
        sql = f"SELECT date_created / {width} AS bucket, value, COUNT(*)" + where + " GROUP BY bucket, value"
        readings = sum(count for _, _, count in database.query(sql, params))
        path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/series/?type=temperature&{query}"
        p50, raw = compare_with_raw(api, database, path, sql, params, settings.metric_requests)
        measured = f"{ms(p50)} p50 · raw GROUP BY bucket, value {ms(raw)} · {p50 / raw:.2f}×"
        ok = None if not target else (p50 <= 1.5 * raw if window is None else p50 <= 0.010)
        rows.append(Row(f"Series: {label} ({readings:,} readings)", measured, target, ok))
    return rows


def bench_summary(url, workers, settings):
    """Time the fleet summary against the raw GROUP BY device, value, and watch the workers' RSS while it streams."""
    fleet_url = fixtures.fleet_url(url)
    total = FLEET_DEVICES * FLEET_READINGS
    note(f"generating the fleet: {FLEET_DEVICES:,} devices × {FLEET_READINGS} readings")
    fixtures.generate_fleet(fleet_url, FLEET_DEVICES, FLEET_READINGS)
    os.sync()
    database = fixtures.Database(fleet_url)
    server = launchers.new_server("fleet-api", launchers.production, "app:app", workers,
                                  DATABASE_URL=fleet_url, CANARY_AUTH="open")
    try:
        began = time.monotonic()
        server.start()
        path = "/devices/summary/?type=temperature"
        load.timed_gets(server.port, path, 1)
        # Readings loaded in bulk, as here, wait to be folded into the rollups: the server catches up in
        # the background, and the summary is timed once it has, as a fleet runs from then on.
        folded = wait_folded(database, began)
        note("streaming the summary")
        with process_memory.PeakRss(server.worker_pids()) as peak:
            received, devices, seconds, complete = load.stream_get(server.port, path)
        note(f"summary of {FLEET_DEVICES:,} devices: {settings.metric_requests} requests")
        sql = "SELECT device_uuid, value, COUNT(*) FROM readings WHERE type = ? GROUP BY device_uuid, value"
        p50, raw = compare_with_raw(server, database, path, sql, ("temperature",), settings.metric_requests)
    finally:
        server.stop()
        database.close()
    whole = complete and devices == FLEET_DEVICES
    label = f"{FLEET_DEVICES:,} devices × {FLEET_READINGS} readings ({total:,})"
    return [
        Row(f"Summary: {label}", f"{ms(p50)} p50 · raw GROUP BY device_uuid, value {ms(raw)} · {p50 / raw:.2f}× · "
            f"bulk load folded {folded:.0f} s after start", "≤ 1.5× raw", p50 <= 1.5 * raw),
        Row(f"Summary: streaming, {label}",
            f"{peak.describe()} · {devices:,} devices, {received / 1e6:.1f} MB in {seconds:.2f} s"
            + ("" if whole else " · INCOMPLETE"),
            "≤ 50 MB RSS growth", peak.growth_kb <= 50 * 1024 and whole),
    ]
