"""The app as real gunicorn processes on loopback: concurrent SQLite writers and a PostgreSQL scale-out."""
import http.client
import itertools
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "bench" / "gunicorn_sync.conf.py"
START_TIMEOUT = 60
REQUEST_TIMEOUT = 30
RUN_TIMEOUT = 240
# Settings the servers read from the environment; each server gets them explicitly, never inherited.
SERVER_SETTINGS = {"DATABASE_URL", "BIND", "PORT", "WEB_CONCURRENCY", "ACCESS_LOG", "CANARY_ROLE", "MAX_BATCH",
                   "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH", "GUNICORN_CMD_ARGS", "TESTING_SETTINGS",
                   "DEVELOPMENT_SETTINGS"}
TYPES, METRICS = ("temperature", "humidity"), ("min", "max", "median", "mean", "mode", "quartiles")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, method, path, body=None):
    """Send one request to a server on loopback; return (status, parsed JSON or text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def stop(process):
    """Ask gunicorn to shut down, then kill its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass  # killed below
    try:
        os.killpg(process.pid, signal.SIGKILL)  # also any worker left behind
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.fixture
def serve(tmp_path):
    """Start gunicorn servers with the benchmark's sync settings; return a function giving (port, process, log)."""
    started = []

    def start(database_url, role="all", workers=2):
        port = free_port()
        env = {key: value for key, value in os.environ.items() if key not in SERVER_SETTINGS}
        env.update(DATABASE_URL=database_url, BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers),
                   CANARY_ROLE=role)
        log = tmp_path / f"gunicorn-{role}-{port}.log"
        with open(log, "wb") as output:
            command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), "app:app"]
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        started.append(process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, f"gunicorn exited with {process.returncode}:\n{log.read_text()}"
            try:
                if call(port, "GET", "/health") == (200, {"status": "ok"}):
                    return port, process, log
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"gunicorn on port {port} not healthy after {START_TIMEOUT}s:\n{log.read_text()}")

    yield start
    for process in started:
        stop(process)


def assert_still_serving(servers):
    """Every worker booted (gunicorn halts if one fails) and none logged a traceback."""
    for _port, process, log in servers:
        text = log.read_text()
        assert process.poll() is None, f"gunicorn exited with {process.returncode}:\n{text}"
        assert "Traceback" not in text and "database is locked" not in text, text


# -- Writers: unique readings posted as single readings, device batches and gateway batches -----------


def plan(writer, devices, singles, batches, size):
    """One writer's requests as (path, body, readings): single posts, device and gateway batches.

    `devices` maps each device to its largest value. Each writer stamps its readings from a range of
    its own, so (device_uuid, date_created) never repeats.
    """
    rng, stamps = random.Random(writer), itertools.count(1_600_000_000 + writer * 1_000_000)
    tops, devices = devices, list(devices)

    def reading(device):
        return {"device_uuid": device, "type": rng.choice(TYPES), "value": rng.randint(0, tops[device]),
                "date_created": next(stamps)}

    def bare(readings):
        return [{key: value for key, value in r.items() if key != "device_uuid"} for r in readings]

    requests = []
    for i in range(singles):
        single = reading(devices[i % len(devices)])
        requests.append((f"/devices/{single['device_uuid']}/readings/", bare([single])[0], [single]))
    for b in range(batches):
        batch = [reading(devices[b % len(devices)]) for _ in range(size)]
        requests.insert(b * len(requests) // batches,
                        (f"/devices/{batch[0]['device_uuid']}/readings/", bare(batch), batch))
        gateway = [reading(devices[j % len(devices)]) for j in range(size)]
        requests.insert((2 * b + 1) * len(requests) // (2 * batches), ("/readings/", gateway, gateway))
    return requests


def run_writer(ports, writer, devices, singles, batches, size):
    """Post one writer's plan, spread over the servers; return (acknowledged readings, first failures)."""
    acknowledged, failures = [], []
    for n, (path, body, readings) in enumerate(plan(writer, devices, singles, batches, size)):
        try:
            status, answer = call(ports[n % len(ports)], "POST", path, body)
        except OSError as error:
            status, answer = None, repr(error)
        expected = {"count": len(readings)} if isinstance(body, list) else readings[0]
        if (status, answer) == (201, expected):
            acknowledged.extend(readings)
        else:
            failures.append((path, status, answer))
    return acknowledged, failures[:5]


def collect(results):
    """Assert no writer saw a failure; return every acknowledged reading."""
    assert [failure for _, failed in results for failure in failed] == []
    return [reading for readings, _ in results for reading in readings]


# -- SQLite: several writer processes through gunicorn's workers, one database file ------------------


def test_sqlite_concurrent_writers_store_every_reading_once(serve, tmp_path):
    database = tmp_path / "w.db"
    server = serve(f"sqlite:///{database}", workers=4)
    devices = {f"sqlite-device-{k}": 100 for k in range(4)}
    jobs = [([server[0]], writer, devices, 250, 5, 40) for writer in range(4)]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        acknowledged = collect(pool.starmap_async(run_writer, jobs).get(RUN_TIMEOUT))
    assert len(acknowledged) == 4 * (250 + 2 * 5 * 40)
    assert_still_serving([server])

    connection = sqlite3.connect(database, timeout=30)
    rows = connection.execute("SELECT device_uuid, date_created, type, value FROM readings").fetchall()
    duplicates = connection.execute("SELECT device_uuid, date_created FROM readings "
                                    "GROUP BY device_uuid, date_created HAVING COUNT(*) > 1").fetchall()
    connection.close()
    assert duplicates == []
    assert len(rows) == len(acknowledged)
    assert set(rows) == {(r["device_uuid"], r["date_created"], r["type"], r["value"]) for r in acknowledged}


# -- PostgreSQL: two ingest servers and one query server on one database -----------------------------


@pytest.fixture
def postgres_url():
    """A URL whose connections use a fresh schema of the test PostgreSQL database, dropped afterwards."""
    url = os.environ.get("CANARY_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CANARY_REQUIRE_POSTGRES") == "1":
            pytest.fail("CANARY_REQUIRE_POSTGRES=1 but CANARY_TEST_POSTGRES_URL is not set")
        pytest.skip("CANARY_TEST_POSTGRES_URL is not set")
    schema = f"canary_processes_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options=-csearch_path%3D{schema}", engine, schema
    with engine.connect() as connection:
        connection.exec_driver_sql("SET lock_timeout = '30s'")
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def oracle(readings, metric):
    """The expected body of a metric, from Python's statistics module."""
    values = sorted(r["value"] for r in readings)
    if metric in ("min", "max"):
        target = values[0] if metric == "min" else values[-1]
        return max((r for r in readings if r["value"] == target), key=lambda r: r["date_created"])
    if metric == "median":
        return {"value": statistics.median(values)}
    if metric == "mean":
        return {"value": statistics.mean(values)}
    if metric == "mode":
        return {"value": min(statistics.multimode(values))}
    half = (len(values) + 1) // 2  # Tukey's hinges: the median is in both halves for an odd count
    return {"quartile_1": statistics.median(values[:half]), "quartile_3": statistics.median(values[-half:])}


def test_postgres_scale_out_reads_back_every_reading_and_statistic(postgres_url, serve):
    url, engine, schema = postgres_url
    ingest = [serve(url, role="ingest"), serve(url, role="ingest")]
    query = serve(url, role="query")
    ports = [server[0] for server in ingest]
    # Seeded: pg-device-1 has ties everywhere; the others have odd and even counts of widely spread values.
    devices = {"pg-device-0": 100, "pg-device-1": 5, "pg-device-2": 100}
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(run_writer, ports, writer, devices, 60, 3, 25) for writer in range(4)]
        written = collect([future.result(timeout=RUN_TIMEOUT) for future in futures])
    with engine.connect() as connection:
        assert connection.exec_driver_sql(f'SELECT COUNT(*) FROM "{schema}".readings').scalar_one() == len(written)

    for device in devices:
        mine = [r for r in written if r["device_uuid"] == device]
        status, listing = call(query[0], "GET", f"/devices/{device}/readings/")
        assert status == 200
        assert Counter(json.dumps(r, sort_keys=True) for r in listing) == Counter(
            json.dumps(r, sort_keys=True) for r in mine)
        assert [r["date_created"] for r in listing] == sorted(r["date_created"] for r in mine)
        for kind in TYPES:
            of_type = [r for r in mine if r["type"] == kind]
            assert len(of_type) > 1
            for metric in METRICS:
                status, body = call(query[0], "GET", f"/devices/{device}/readings/{metric}/?type={kind}")
                assert status == 200, (metric, body)
                expected = oracle(of_type, metric)
                if metric == "median":  # the reading at the middle rank, with the median as its value
                    assert (body["device_uuid"], body["type"]) == (device, kind)
                    assert body["date_created"] in {r["date_created"] for r in of_type}
                    body = {"value": body["value"]}
                assert body == expected, (device, kind, metric)

    reading = {"type": "temperature", "value": 1, "date_created": 1}
    for path, body in (("/devices/pg-device-1/readings/", reading), ("/readings/", [reading])):
        status, answer = call(query[0], "POST", path, body)
        assert status == 404 and answer["code"] == 404 and answer["message"], answer
    for port in ports:
        status, answer = call(port, "GET", "/devices/pg-device-1/readings/")
        assert status == 404 and answer["code"] == 404, answer
        status, answer = call(port, "GET", "/devices/pg-device-1/readings/mean/?type=temperature")
        assert status == 404 and answer["code"] == 404, answer
    assert_still_serving(ingest + [query])
