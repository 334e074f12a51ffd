"""Crash safety: every process of the server killed at once loses no acknowledged reading or half a batch."""
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from serving import call

pytestmark = pytest.mark.crash

WRITERS = 8
BATCH = 50


def write_until_refused(port, writer, results, stop):
    """Post single readings, device batches and gateway batches until the server is gone.

    Each reading has a date_created of its own, which names it; batches are recorded by their dates.
    """
    stamp = writer * 10**7
    while not stop.is_set():
        for kind in ("single", "device", "gateway"):
            size = 1 if kind == "single" else BATCH
            dates = list(range(stamp, stamp + size))
            stamp += size
            device = f"crash-{writer}-{kind}"
            readings = [{"type": "temperature", "value": date % 101, "date_created": date} for date in dates]
            if kind == "single":
                path, body = f"/devices/{device}/readings/", readings[0]
                expected = {**readings[0], "device_uuid": device}
            elif kind == "device":
                path, body, expected = f"/devices/{device}/readings/", readings, {"count": size}
            else:
                body = [{**reading, "device_uuid": f"{device}-{n % 3}"} for n, reading in enumerate(readings)]
                path, expected = "/readings/", {"count": size}
            try:
                status, answer, _ = call(port, "POST", path, body, timeout=10)
            except OSError:
                status = answer = None
            results.append((kind, tuple(dates), (status, answer) == (201, expected)))
            if status is None:
                return


def stored_dates(database_url):
    """Count the stored readings of every date_created, straight from the database."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT date_created FROM readings WHERE device_uuid LIKE 'crash-%'"))
            return Counter(date for (date,) in rows)
    finally:
        engine.dispose()


def test_server_killed_at_once_loses_no_acknowledged_reading(production, database_uri):
    server = production(database_uri)
    results, stop = [], threading.Event()
    writers = [threading.Thread(target=write_until_refused, args=(server.port, n, results, stop))
               for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 120
    while sum(len(dates) for _, dates, ok in list(results) if ok) <= 1000:  # the kill comes in the middle of load
        assert time.monotonic() < deadline, "the writers were not acknowledged 1,000 readings"
        time.sleep(0.05)
    server.kill()
    stop.set()
    for writer in writers:
        writer.join(timeout=30)

    restarted = production(database_uri)
    stored = stored_dates(database_uri)
    acknowledged = [dates for _, dates, ok in results if ok]
    assert sum(len(dates) for dates in acknowledged) > 1000  # the kill came in the middle of real load
    assert max(stored.values()) == 1  # nothing stored twice
    for dates in acknowledged:
        assert all(stored[date] == 1 for date in dates)
    for kind, dates, _ok in results:
        kept = sum(stored[date] for date in dates)
        assert kept in (0, len(dates)), (kind, kept)  # a batch is all or nothing, acknowledged or not
    assert call(restarted.port, "GET", "/health")[:2] == (200, {"status": "ok"})
    reading = {"type": "humidity", "value": 1, "date_created": 1}
    assert call(restarted.port, "POST", "/devices/after-crash/readings/", reading)[0] == 201
