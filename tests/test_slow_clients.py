"""Slow clients against the production command: they never stall others, and slow readers get everything."""
import json
import os
import selectors
import socket
import threading
import time

import pytest
from serving import call

pytestmark = pytest.mark.production


class TrickleClients:
    """Connections that each send one byte a second: of request headers, or of a request body."""

    def __init__(self, port, headers=0, bodies=0):
        self.port, self.stopped, self.trickling = port, threading.Event(), threading.Event()
        self.plans = [b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 1000] * headers
        self.plans += [b"1" * 1000] * bodies  # after a complete head announcing Content-Length: 1000
        self.bodies = bodies
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.sockets = []
        for index, plan in enumerate(self.plans):
            sock = socket.create_connection(("127.0.0.1", self.port))
            if index >= len(self.plans) - self.bodies:
                sock.sendall(b"POST /readings/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
            self.sockets.append((sock, plan))
        self.thread.start()
        return self

    def _run(self):
        sent = 0
        while not self.stopped.wait(1.0):
            for sock, plan in self.sockets:
                try:
                    sock.send(plan[sent:sent + 1])
                except OSError:
                    pass  # nginx may drop a client that is too slow; it then costs nothing at all
            sent += 1
            self.trickling.set()  # every client has sent part of its request

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        for sock, _ in self.sockets:
            sock.close()


def probe(port, seconds, interval=0.2):
    """POST a reading and GET /health every interval on fresh connections; return each (status, seconds)."""
    results, deadline, index = [], time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        for method, path, body in (("POST", "/devices/probe/readings/",
                                    {"type": "humidity", "value": 50, "date_created": index}),
                                   ("GET", "/health", None)):
            began = time.monotonic()
            try:
                status = call(port, method, path, body, timeout=5)[0]
            except OSError:
                status = None
            results.append((status, time.monotonic() - began))
        index += 1
        time.sleep(interval)
    return results


def test_slow_header_and_body_clients_leave_others_answered(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/slow.db", workers=2)
    with TrickleClients(server.port, headers=64, bodies=64) as slow:
        assert slow.trickling.wait(30)
        results = probe(server.port, seconds=6)
    statuses = [status for status, _ in results]
    assert len(statuses) >= 20
    assert set(statuses) <= {200, 201}, statuses  # none timed out after 5 s or failed
    status, listing, _ = call(server.port, "GET", "/devices/probe/readings/")
    assert status == 200 and len(listing) == statuses.count(201)


def post_batches(port, device, count, size, first_date=0):
    """Post `count` batches of `size` readings for a device; return how many readings were stored."""
    for batch in range(count):
        readings = [{"type": "temperature", "value": n % 101, "date_created": first_date + batch * size + n}
                    for n in range(size)]
        status, body, _ = call(port, "POST", f"/devices/{device}/readings/", readings, timeout=60)
        assert status == 201, body
    return count * size


def test_slow_reader_gets_the_whole_listing_while_writes_go_on(production, tmp_path):
    database = tmp_path / "reader.db"
    server = production(f"sqlite:///{database}", workers=2)
    readings = post_batches(server.port, "long", count=15, size=10_000)
    stop_writing, largest_wal = threading.Event(), [0]

    def write_and_watch_wal():
        batch = 0
        while not stop_writing.is_set():
            post_batches(server.port, "other", count=1, size=1_000, first_date=batch * 1_000)
            batch += 1
            largest_wal[0] = max(largest_wal[0], os.path.getsize(f"{database}-wal"))
            time.sleep(0.1)

    writer = threading.Thread(target=write_and_watch_wal)
    writer.start()
    # A pace that makes the read last 40 s, longer than any worker timeout the service used to have.
    size = len(read_slowly(server.port, "/devices/long/readings/", bytes_per_second=10**9))
    try:
        body = read_slowly(server.port, "/devices/long/readings/", bytes_per_second=size // 40)
    finally:
        stop_writing.set()
        writer.join()
    listing = json.loads(body)
    assert [reading["date_created"] for reading in listing] == list(range(readings))
    assert largest_wal[0] < 64 * 1024 * 1024


def read_slowly(port, path, bytes_per_second):
    """GET a path and read the response body at a steady rate; return the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # keep the kernel from reading ahead
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        received, began = b"", time.monotonic()
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        while True:
            allowed = int((time.monotonic() - began) * bytes_per_second) - len(received)
            if allowed <= 0:
                time.sleep(0.01)
                continue
            selector.select(timeout=60)
            chunk = sock.recv(min(allowed, 65536))
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    if b"transfer-encoding: chunked" in head.lower():
        return dechunk(body)
    return body


def dechunk(body):
    """Return the payload of a chunked transfer-encoded body, which must end with its last chunk."""
    payload, position = b"", 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";")[0], 16)
        if size == 0:
            return payload
        payload += body[line_end + 2:line_end + 2 + size]
        position = line_end + 2 + size + 2
