"""Benchmark statistics over years and fleets: the upgrade to rollups and the routes on them, on both backends.

    python bench/rollups.py [--postgres-url URL] [--quick]

For each dataset (bench/datasets.py: a device with 5 years of a reading a minute per type, and a
fleet of 100,000 devices × 288 readings in one day), as the previous release left its database,
the production command is started on a fresh copy: its first answers are checked against the raw
readings, the rollups' build is timed from the start, and then each route of the targets is
timed beside the raw query it replaces, and random windows, zones and intervals are checked for
exactness. Prints one markdown table.
"""
import argparse
import json
import random
import statistics
import sys
import time

import datasets
import fixtures
import launchers
import load
import process_memory
import reference
from table import Row, machine, ms, note, now, render, version

YEAR, DAY = 365 * 86_400, 86_400
STATS = ("min", "max", "median", "mean", "mode", "quartiles")
ZONES = ("UTC", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/New_York")


def get_json(port):
    """Return a GET that answers the parsed JSON of a path, failing on any other status than 200."""

    def get(path):
        return json.loads(load.timed_get_body(port, path))

    return get


def p50(port, path, requests):
    """Return the median end-to-end time of `requests` GETs, after one to warm up."""
    load.timed_gets(port, path, 1)
    return statistics.median(load.timed_gets(port, path, requests))


def raw_time(database, sql, params, repeats):
    """Return the median time of a raw query, rows fetched."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        database.query(sql, params)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def start(url, workers):
    """Start the production command on a database and return (server, seconds from its start to /health)."""
    server = launchers.new_server("rollups-api", launchers.production, "app:app", workers, DATABASE_URL=url,
                                  CANARY_AUTH="open")
    began = time.monotonic()
    server.start(timeout=300)
    return server, began


def wait_ready(database, began, limit=900):
    """Poll rollup_state until the build is done; return the seconds from the start."""
    while time.monotonic() - began < limit:
        rows = database.query("SELECT status FROM rollup_state")
        if rows and rows[0][0] == "ready":
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError("the rollups were not built in time")


def arrival(database):
    return "id" if database.is_postgres else "rowid"


def bench_device(url, backend, settings):
    """Upgrade the 5-year device's database, then time its statistics and series."""
    database = fixtures.Database(url)
    server, began = start(url, settings.workers)
    rows = []
    try:
        get = get_json(server.port)
        whole = (datasets.DEVICE_START, datasets.DEVICE_START + datasets.DEVICE_DAYS * DAY - 1)
        first = reference.check_metrics(get, database, datasets.DEVICE, "temperature", *whole, arrival(database))
        answered = time.monotonic() - began
        ready = wait_ready(database, began)
        rows.append(Row(f"Upgrade, {backend}: 5-year device ({datasets.COUNTS['device']:,} readings, no rollups)",
                        f"the six statistics exact at {answered:.1f} s ({len(first)} differences); "
                        f"rollups built {ready:.0f} s after start",
                        "exact at once; built ≤ 150 s", not first and ready <= 150))
        rng = random.Random(3)
        start_3y = datasets.DEVICE_START + 400 * DAY + 13 * 3600 + 37 * 60 + 11
        windows = {"whole history": whole, "unaligned 3-year window": (start_3y, start_3y + 3 * YEAR - 7 * 3600)}
        for label, (low, high) in windows.items():
            target = 0.010 if label == "whole history" else 0.015
            sql = "SELECT value, COUNT(*) FROM readings WHERE device_uuid = ? AND type = ? " \
                  "AND date_created BETWEEN ? AND ? GROUP BY value"
            raw = raw_time(database, sql, (datasets.DEVICE, "temperature", low, high), settings.raw_repeats)
            for metric in STATS:
                note(f"{backend}: {metric}, {label}")
                took = p50(server.port, f"/devices/{datasets.DEVICE}/readings/{metric}/?type=temperature"
                                        f"&start={low}&end={high}", settings.requests)
                rows.append(Row(f"{backend}: {metric}, {label} of the 5-year device",
                                f"{ms(took)} p50 · raw GROUP BY value {ms(raw)} · {raw / took:,.0f}× faster",
                                f"≤ {target * 1000:.0f} ms p50" if backend == "SQLite" else "",
                                took <= target if backend == "SQLite" else None, figure=took))
        series = {"1 year at 1-day buckets": (datasets.DEVICE_START + 2 * YEAR, YEAR, "1d", DAY),
                  "5 years at 1-week buckets": (datasets.DEVICE_START, datasets.DEVICE_DAYS * DAY, "1w", 7 * DAY)}
        for label, (low, length, interval, width) in series.items():
            sql = f"SELECT date_created / {width} AS bucket, value, COUNT(*) FROM readings WHERE device_uuid = ? " \
                  "AND type = ? AND date_created BETWEEN ? AND ? GROUP BY bucket, value"
            raw = raw_time(database, sql, (datasets.DEVICE, "temperature", low, low + length - 1),
                           settings.raw_repeats)
            for zone in ("UTC", "Europe/London"):
                note(f"{backend}: series, {label}, {zone}")
                took = p50(server.port, f"/devices/{datasets.DEVICE}/readings/series/?type=temperature"
                                        f"&start={low}&end={low + length - 1}&interval={interval}&tz={zone}",
                           settings.requests)
                rows.append(Row(f"{backend}: series, {label}, {zone}, of the 5-year device",
                                f"{ms(took)} p50 · raw GROUP BY bucket, value {ms(raw)} · {raw / took:,.0f}× faster",
                                "≤ 25 ms p50" if backend == "SQLite" else "",
                                took <= 0.025 if backend == "SQLite" else None, figure=took))
        differences, checked = [], 0
        for _ in range(settings.exact_windows):
            low = datasets.DEVICE_START + rng.randrange(datasets.DEVICE_DAYS * DAY)
            high = min(whole[1], low + rng.choice((3600, DAY, 40 * DAY, YEAR, 3 * YEAR)) + rng.randrange(DAY))
            kind = rng.choice(("temperature", "humidity"))
            differences += reference.check_metrics(get, database, datasets.DEVICE, kind, low, high, arrival(database))
            span = rng.choice((2 * DAY, 20 * DAY))
            differences += reference.check_series(get, database, datasets.DEVICE, kind, low, min(whole[1], low + span),
                                                  rng.choice(("1d", "1w", "2d", "90000")), rng.choice(ZONES))
            checked += 1
        rows.append(Row(f"Exact, {backend}: the 5-year device, {checked} random windows × the six statistics and a "
                        "series in a random zone", f"{len(differences)} differences from the raw readings"
                        + (f"; first: {differences[0]}" if differences else ""), "0", not differences))
    finally:
        server.stop()
        database.close()
    return rows


def bench_fleet(url, backend, settings):
    """Upgrade the fleet's database, then time its summaries."""
    database = fixtures.Database(url)
    server, began = start(url, settings.workers)
    rows = []
    day = (datasets.FLEET_DAY, datasets.FLEET_DAY + DAY - 1)
    try:
        get = get_json(server.port)
        page = get(f"/devices/summary/?type=temperature&start={day[0]}&end={day[1]}&limit=3")
        answered = time.monotonic() - began
        wrong = [row for row in page if reference.statistics(reference.histogram(
            database, row["device_uuid"], "temperature", *day))["median"] != row["median_reading_value"]]
        ready = wait_ready(database, began)
        rows.append(Row(f"Upgrade, {backend}: fleet ({datasets.COUNTS['fleet']:,} readings, no rollups)",
                        f"the summary's first page exact at {answered:.1f} s ({len(wrong)} differences); "
                        f"rollups built {ready:.0f} s after start", "exact at once; built ≤ 150 s",
                        not wrong and len(page) == 3 and ready <= 150))
        raw_sql = "SELECT device_uuid, value, COUNT(*) FROM readings WHERE type = ? AND date_created BETWEEN ? " \
                  "AND ? GROUP BY device_uuid, value"
        unaligned = (datasets.FLEET_DAY + 3 * 3600 + 17 * 60 + 42, datasets.FLEET_DAY + 21 * 3600 + 17 * 60 + 41)
        for label, window, target in (("the day", day, 1.5), ("an unaligned 18-hour window", unaligned, 3.0)):
            raw = raw_time(database, raw_sql, ("temperature", *window), 1)
            path = f"/devices/summary/?type=temperature&start={window[0]}&end={window[1]}"
            note(f"{backend}: summary of {label}")
            times, devices = [], 0
            for _ in range(settings.summary_requests):
                with process_memory.PeakRss(server.worker_pids()) as peak:
                    received, devices, seconds, complete = load.stream_get(server.port, path)
                times.append(seconds)
            took = statistics.median(times)
            rows.append(Row(f"{backend}: summary of {label}, {devices:,} devices, full JSON",
                            f"{took:.2f} s p50 · raw GROUP BY device_uuid, value {raw:.1f} s · {raw / took:.0f}× "
                            f"faster · {received / 1e6:.1f} MB · {peak.describe()}",
                            f"≤ {target} s; RSS growth ≤ 50 MB" if backend == "SQLite" else "RSS growth ≤ 50 MB",
                            (took <= target if backend == "SQLite" else True) and peak.growth_kb <= 50 * 1024
                            and complete and devices == datasets.FLEET_DEVICES, figure=took))
        note(f"{backend}: the first page sorted by readings")
        took = p50(server.port, f"/devices/summary/?type=temperature&start={day[0]}&end={day[1]}&limit=100",
                   settings.requests)
        rows.append(Row(f"{backend}: summary of the day, first page of 100 devices sorted by readings",
                        f"{ms(took)} p50", "≤ 100 ms p50" if backend == "SQLite" else "",
                        took <= 0.100 if backend == "SQLite" else None, figure=took))
        rng, differences = random.Random(5), []
        for _ in range(settings.exact_windows // 5):
            low = datasets.FLEET_DAY - 3600 + rng.randrange(DAY + 7200)
            high = low + rng.randrange(1, DAY)
            for row in get(f"/devices/summary/?type=temperature&start={low}&end={high}&limit=3"
                           f"&offset={rng.randrange(1000)}&sort=median_reading_value"):
                expected = reference.statistics(reference.histogram(database, row["device_uuid"], "temperature",
                                                                    low, high))
                if (row["number_of_readings"], row["median_reading_value"], row["mean_reading_value"]) != (
                        expected["count"], expected["median"], expected["mean"]):
                    differences.append((row, expected))
        rows.append(Row(f"Exact, {backend}: fleet summaries of {settings.exact_windows // 5} random windows",
                        f"{len(differences)} differences from the raw readings", "0", not differences))
    finally:
        server.stop()
        database.close()
    return rows


def ratios(rows):
    """Return a row for each PostgreSQL figure against the same route's SQLite figure (target ≤ 2×)."""
    figures = {row.benchmark.split(": ", 1)[1]: row for row in rows if row.figure is not None
               and row.benchmark.startswith("SQLite: ")}
    result = []
    for row in rows:
        if row.figure is not None and row.benchmark.startswith("PostgreSQL: "):
            sqlite = figures.get(row.benchmark.split(": ", 1)[1])
            if sqlite:
                result.append(Row(f"PostgreSQL / SQLite: {row.benchmark.split(': ', 1)[1]}",
                                  f"{row.figure / sqlite.figure:.2f}×", "≤ 2×", row.figure <= 2 * sqlite.figure))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", help="also run on PostgreSQL: datasets are made as databases beside "
                                               "this one (the role needs CREATEDB)")
    parser.add_argument("--quick", action="store_true", help="fewer requests and windows")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = argparse.Namespace(workers=args.workers, requests=5 if args.quick else 20, raw_repeats=1 if args.quick
                                  else 3, summary_requests=1 if args.quick else 3,
                                  exact_windows=10 if args.quick else 50)
    rows = []
    backends = [("SQLite", datasets.fresh_sqlite)]
    if args.postgres_url:
        backends.append(("PostgreSQL", lambda name: datasets.fresh_postgres(args.postgres_url, name)))
    for backend, fresh in backends:
        rows += bench_device(fresh("device"), backend, settings)
        rows += bench_fleet(fresh("fleet"), backend, settings)
    rows += ratios(rows)
    print(f"Machine: {machine()}; server: python serve.py (nginx + granian {version('granian')}) with "
          f"WEB_CONCURRENCY={args.workers}; {now()}")
    print()
    print(render(rows, with_targets=True))


if __name__ == "__main__":
    sys.exit(main())
