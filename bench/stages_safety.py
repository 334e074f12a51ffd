"""Safety stages: slow clients, a slow reader during writes, malformed requests, and memory per request."""
import http.client
import json
import math
import os
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fixtures
import launchers
import load
import process_memory
import slowclients
from sqlalchemy.engine import make_url
from table import Row, ms, note

MIB = 1024 * 1024


def duration(seconds):
    """Format a probe's figure in ms; ∞ stands for a failed request."""
    return "∞" if math.isinf(seconds) else ms(seconds)


def bench_slow_clients(api, settings, clients=64):
    """Probe a normal client's /health and single POST while slow-header and slow-body clients are connected."""
    note(f"slow clients: {clients} slow headers + {clients} slow bodies, probing for {settings.probe_seconds} s")
    with slowclients.SlowClients(api.port, (("header", clients), ("body", clients))) as slow:
        probe = slowclients.probe_in_process(api.port, settings.probe_seconds)
    api.wait_healthy(60)
    label = f"Slow clients: {clients} slow-header + {clients} slow-body clients, a probe's /health and POST"
    target = "p99 ≤ 100 ms, 0 stalls"
    if probe is None:
        return [Row(label, "the probe overran its deadline", target, False)]
    opened = sum(stats.opened for stats in slow.stats.values() if stats)
    dropped = sum(sum(stats.dropped.values()) for stats in slow.stats.values() if stats)
    p99 = probe.percentile(0.99)
    measured = (f"p99 {duration(p99)} · p50 {duration(probe.percentile(0.5))} · {probe.count} requests, "
                f"{probe.stalls} stalls · slow clients: {opened} connections, {dropped} dropped by the server")
    return [Row(label, measured, target, p99 <= 0.100 and probe.stalls == 0)]


class BatchWriter(threading.Thread):
    """A client that POSTs batches of 1,000 readings for one device until stopped, watching a SQLite WAL's size."""

    def __init__(self, port, device, wal_path, pause=0.1):
        super().__init__(daemon=True)
        self.port, self.device, self.wal_path, self.pause = port, device, wal_path, pause
        self.stopping = threading.Event()
        self.batches = self.errors = self.largest_wal = 0

    def run(self):
        connection = http.client.HTTPConnection(launchers.HOST, self.port, timeout=60)
        self.watch_wal()
        while not self.stopping.is_set():
            try:
                connection.request("POST", f"/devices/{self.device}/readings/",
                                   load.batch_body(9, self.batches + self.errors), load.HEADERS)
                response = connection.getresponse()
                response.read()
                ok = response.status == 201
            except (OSError, http.client.HTTPException):
                connection.close()
                ok = False
            self.batches += ok
            self.errors += not ok
            self.watch_wal()
            self.stopping.wait(self.pause)
        connection.close()

    def watch_wal(self):
        """Record the WAL's size if it is the largest yet."""
        if self.wal_path is not None and self.wal_path.exists():
            self.largest_wal = max(self.largest_wal, self.wal_path.stat().st_size)

    def stop(self):
        """Stop writing and wait for the last batch."""
        self.stopping.set()
        self.join(timeout=120)


def bench_slow_reader(api, url, readings, settings):
    """Read the history device's whole listing at a steady rate while a writer posts batches to another device.

    The rate makes the read take at least settings.read_seconds. On SQLite the WAL's size is watched
    throughout: a listing that held one read snapshot would keep every checkpoint from emptying it.
    """
    path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/"
    size = load.stream_get(api.port, path)[0]  # the listing's size, to set the pace
    rate = size / (settings.read_seconds + 3)
    url = make_url(url)
    wal_path = Path(url.database + "-wal") if url.get_backend_name() == "sqlite" else None
    note(f"slow reader: {size / 1e6:.1f} MB at {rate / 1e6:.2f} MB/s while batches are written")
    max_seconds = 3 * settings.read_seconds + 60
    reader = slowclients.start_slow_read(api.port, path, rate, max_seconds)
    writer = BatchWriter(api.port, "bench-writer", wal_path)
    writer.start()
    try:
        result = reader.result(max_seconds + 120)
    finally:
        writer.stop()
    label = f"Slow reader: {readings:,}-reading listing at {rate / 1e6:.2f} MB/s during batch writes"
    target = f"whole valid JSON, ≥ {settings.read_seconds} s, WAL < 64 MB"
    if result is None:
        return [Row(label, "the reader overran its deadline", target, False)]
    whole = result.valid_json and result.rows == readings
    wal = "no WAL (PostgreSQL)" if wal_path is None else f"WAL largest {writer.largest_wal / MIB:.1f} MB"
    answer = "complete, valid JSON" if whole else (
        f"INCOMPLETE: status {result.status}, {'valid' if result.valid_json else 'not valid'} JSON"
        + (f" ({result.error})" if result.error else ""))
    measured = (f"{answer}, {result.rows or 0:,} rows, {result.received / 1e6:.1f} MB in {result.seconds:.0f} s"
                f" · {wal} · writer: {writer.batches:,} batches of 1,000, {writer.errors} errors")
    ok = (whole and result.seconds >= settings.read_seconds and writer.largest_wal < 64 * MIB
          and writer.batches > 0 and writer.errors == 0)
    return [Row(label, measured, target, ok)]


def head(method, target, *headers):
    """Return the bytes of a request head that asks for the connection to close after the answer."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


MALFORMED = {  # the cases of tests/test_serve.py that gunicorn answered with an HTML page
    "request line over 16 KB": head(b"GET", b"/devices/" + b"x" * 20000 + b"/readings/"),
    "lowercase method": head(b"get", b"/health"),
    "garbage request line": b"GARBAGE\r\n\r\n",
    "Content-Length not a number": head(b"POST", b"/readings/", b"Content-Length: abc"),
    "Content-Length negative": head(b"POST", b"/readings/", b"Content-Length: -5"),
    "two Content-Lengths": head(b"POST", b"/readings/", b"Content-Length: 5", b"Content-Length: 6") + b"[1,2]",
    "unknown Transfer-Encoding": head(b"POST", b"/readings/", b"Transfer-Encoding: gzip"),
    "header over 16 KB": head(b"GET", b"/health", b"X-Big: " + b"y" * 20000),
    "headers over 64 KB in all": head(b"GET", b"/health", *(b"X-%d: %s" % (n, b"z" * 15000) for n in range(5))),
    "body over the largest limit": head(b"POST", b"/readings/", b"Content-Length: %d" % (1 << 30)) + b"[",
    "5,000-character device id": head(b"GET", b"/devices/" + b"d" * 5000 + b"/readings/"),
    "8 KB query string": head(b"GET", b"/devices/dev-1/readings/?type=temperature&colour=" + b"r" * 8000),
}


def raw_exchange(port, data, timeout=10):
    """Send raw bytes; return (status or None, head text, body bytes) of the answer they get."""
    received = b""
    with socket.create_connection((launchers.HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        while True:
            head_bytes, separator, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head_bytes)
            if separator and length and len(body) >= int(length.group(1)):
                break
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):  # nginx may reset rather than read a refused body
                break
            if not chunk:
                break
            received += chunk
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1]) if head_bytes.startswith(b"HTTP/") else None
    return status, head_bytes.decode(errors="replace"), body


def is_json_error(status, head_text, body):
    """Tell whether an answer is an error in the API's JSON shape: code, status, message, request_id (the
    answer's X-Request-ID), optional errors."""
    if status is None or status < 400 or "content-type: application/json" not in head_text.lower():
        return False
    try:
        error = json.loads(body)
    except ValueError:
        return False
    request_id = re.search(r"(?im)^x-request-id:\s*(\S+)", head_text)
    return (isinstance(error, dict) and error.get("code") == status and set(error) - {"errors"} ==
            {"code", "status", "message", "request_id"} and bool(error["message"]) and bool(error["status"])
            and request_id is not None and error["request_id"] == request_id.group(1))


def bench_malformed(api):
    """Send each malformed request to the server and count the answers not in the JSON error shape."""
    note(f"malformed requests: {len(MALFORMED)} cases")
    statuses, wrong = {}, []
    for label, data in MALFORMED.items():
        status, head_text, body = raw_exchange(api.port, data)
        statuses[status] = statuses.get(status, 0) + 1
        if not is_json_error(status, head_text, body):
            wrong.append(f"{label}: {status}")
    answered = ", ".join(f"{status} ×{count}" for status, count in sorted(statuses.items(), key=str))
    measured = f"{len(wrong)} of {len(MALFORMED)} not JSON errors ({answered})"
    return [Row(f"Malformed requests: {len(MALFORMED)} cases", measured + "".join(f"; {case}" for case in wrong),
                "0 HTML / non-JSON", not wrong)]


def post(port, path, body):
    """POST a JSON body on a fresh connection and return the status of the answer."""
    connection = http.client.HTTPConnection(launchers.HOST, port, timeout=120)
    try:
        connection.request("POST", path, body, load.HEADERS)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def device_token(url, device):
    """Create a device token on a database with the token command line, as an operator would; return it."""
    env = {**os.environ, "DATABASE_URL": url}
    created = subprocess.run([launchers.PYTHON, "-m", "flask", "--app", "app", "tokens", "create", "--kind", "device",
                              "--device", device], cwd=launchers.REPO, env=env, capture_output=True, text=True,
                             check=True)
    return created.stdout.strip()


def send_large_body(port, path, size):
    """POST `size` bytes of spaces without a token on a fresh connection; return the answer's status or None."""
    try:
        with socket.create_connection((launchers.HOST, port), timeout=60) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (path.encode(), size))
            chunk, sent = b" " * 65536, 0
            try:
                while sent < size:
                    sent += sock.send(chunk[:size - sent])
            except OSError:
                pass  # refused before the whole body arrived
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return None
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def bench_anonymous_bursts(url, rounds=3, senders=20, size=8 * MIB):
    """Send bursts of large bodies without a token to each write route while a device posts and reads /health.

    A server in tokens mode refuses them before reading them: 413 by nginx past the device route's
    1 MiB, 401 by the app on POST /readings/. None may cost any other client an answer.
    """
    paths = ("/devices/bench-anonymous/readings/", "/readings/")
    note(f"anonymous bursts: {rounds} rounds of {senders} concurrent {size // MIB} MiB POSTs to each write route")
    server = launchers.new_server("api-bursts", launchers.production, "app:app", 2, DATABASE_URL=url,
                                  CANARY_AUTH="tokens")
    token = device_token(url, slowclients.PROBE_DEVICE)
    statuses = Counter()
    try:
        server.start()
        stop = slowclients.new_event()
        probe = slowclients.start_probe(server.port, 600, stop, interval=0.05,
                                        headers={"Authorization": f"Bearer {token}"})
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=senders) as pool:
            for path in paths:
                for _ in range(rounds):
                    statuses.update(pool.map(send_large_body, [server.port] * senders, [path] * senders,
                                             [size] * senders))
        seconds = time.monotonic() - began
        time.sleep(5)  # the probe goes on: a worker taken out of rotation would stay out for 10 s
        stop.set()
        result = probe.result(60)
    finally:
        server.stop()
    label = (f"Anonymous bursts: {rounds} rounds of {senders} concurrent {size // MIB} MiB POSTs without a token to "
             f"each write route; a device's POST and /health every 50 ms, during and 5 s after")
    target = "0 non-2xx, p99 ≤ 100 ms"
    if result is None:
        return [Row(label, "the probe overran its deadline", target, False)]
    refused = ", ".join(f"{status} ×{count}" for status, count in sorted(statuses.items(), key=str))
    p99 = result.percentile(0.99)
    measured = (f"p99 {duration(p99)} · p50 {duration(result.percentile(0.5))} · {result.count} requests, "
                f"{result.failed} not 2xx · the bursts: {refused} in {seconds:.1f} s")
    return [Row(label, measured, target, result.failed == 0 and p99 <= 0.100)]


def bench_memory(url):
    """POST a hostile and a full-size body to the gateway route; report the worker's peak RSS growth for each.

    Each body goes to a fresh production server of one worker, warmed up by a one-reading batch, so
    that no earlier request has already grown the worker's heap and hidden this one's growth.
    """
    first = load.FIRST_DATE + 5 * 10**8
    batch = [{"device_uuid": f"bench-gateway-{n % 100:02d}", "type": "temperature", "value": n % 101,
              "date_created": first + n} for n in range(10_000)]
    bodies = {  # label: (body, the statuses that answer it correctly)
        "8 MiB of empty objects": ("[" + "{}," * (8 * MIB // 3 - 1) + "{}]", (413, 422)),
        "a full gateway batch of 10,000 readings": (json.dumps(batch), (201,)),
        "10,000 readings of a 700-character unknown key": (json.dumps([{"k" * 700: n} for n in range(10_000)]),
                                                           (422,)),
    }
    rows = []
    for label, (body, expected) in bodies.items():
        note(f"memory per request: {label}")
        server = launchers.new_server("api-memory", launchers.production, "app:app", 1,
                                      DATABASE_URL=url, CANARY_AUTH="open")
        try:
            server.start()
            post(server.port, "/readings/", json.dumps([{**batch[0], "date_created": first - 1}]))
            with process_memory.PeakRss(server.worker_pids()) as peak:
                status = post(server.port, "/readings/", body)
        finally:
            server.stop()
        rows.append(Row(f"Memory per request: {label}, POST /readings/ ({len(body) / MIB:.1f} MiB)",
                        f"{status} · worker peak {peak.describe()}", "≤ 64 MB RSS growth",
                        peak.growth_kb <= 64 * 1024 and status in expected))
    return rows
