"""Operations stages: one scrape after a million requests, a device over its rate limit, retries with
Idempotency-Key across a kill -9, and schemathesis run from outside against /openapi.json."""
import http.client
import json
import random
import socket
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fixtures
import launchers
import load
import slowclients
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.config._checks import NegativeDataRejectionConfig
from table import Row, note

IDEMPOTENCY_KEY = "Idempotency-Key"


def scrape(port):
    """Return (seconds, {name: summed value}) of one GET /metrics."""
    began = time.perf_counter()
    text = load.timed_get_body(port, "/metrics").decode()
    seconds = time.perf_counter() - began
    sums = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0) + sample.value
    return seconds, sums


def pipelined_gets(port, path, total, connections=16, depth=64):
    """Send `total` GETs over `connections` keep-alive connections, `depth` requests in flight on each, and
    return how many answered 200. Every request is answered before this returns, so the count is exact."""
    request = f"GET {path} HTTP/1.1\r\nHost: {load.HOST}\r\n\r\n".encode()
    shares = [total // connections + (n < total % connections) for n in range(connections)]
    answered = [0] * connections

    def drive(number):
        with socket.create_connection((load.HOST, port), timeout=60) as sock:
            reader, left, ok = sock.makefile("rb"), shares[number], 0
            while left:
                batch = min(depth, left)
                sock.sendall(request * batch)
                for _ in range(batch):
                    status = int(reader.readline().split()[1])
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    reader.read(length)
                    ok += status == 200
                left -= batch
            answered[number] = ok

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(drive, range(connections)))
    return sum(answered)


def bench_scrape(url, workers, total=1_000_000):
    """Send a million requests to a fresh production server, then time scrapes and check their request count."""
    server = launchers.new_server("api-scrape", launchers.production, "app:app", workers, DATABASE_URL=url,
                                  CANARY_AUTH="open", CANARY_REQUEST_LOG="")
    try:
        server.start()
        _, before = scrape(server.port)
        note(f"scrape: {total:,} GET /health through the production command")
        began = time.monotonic()
        ok = pipelined_gets(server.port, "/health", total)
        seconds = time.monotonic() - began
        times, sums = [], None
        for _ in range(11):
            took, sums = scrape(server.port)
            times.append(took)
        scrapes = len(times)
        # A worker copies its counts to its files at most FLUSH_SECONDS after counting them: the
        # other worker's last scrapes may need another scrape to show.
        deadline = time.monotonic() + 2.0
        while (sums["canary_requests_total"] - before["canary_requests_total"] != total + scrapes
               and time.monotonic() < deadline):
            _, sums = scrape(server.port)
            scrapes += 1
    finally:
        server.stop()
    counted = sums["canary_requests_total"] - before["canary_requests_total"]
    expected = total + scrapes  # the first scrape, and every one before the last, count too
    p50 = statistics.median(times)
    return [Row(f"Metrics: a scrape of /metrics after {total:,} requests ({workers} workers)",
                f"{p50 * 1000:.1f} ms p50 of 11 scrapes · requests counted {counted:,.0f}, sent {expected:,} "
                f"({ok:,} × 200 in {seconds:.0f} s)", "≤ 50 ms; counted = sent",
                p50 <= 0.050 and counted == expected and ok == total)]


def bench_rate_limit(url, workers, seconds=10, connections=4):
    """A device posts as fast as it can (wrk on `connections` connections) against the default limits while a
    probe posts for another device."""
    server = launchers.new_server("api-limits", launchers.production, "app:app", workers, rate_limits=True,
                                  DATABASE_URL=url, CANARY_AUTH="open", CANARY_REQUEST_LOG="")
    database = fixtures.Database(url)
    device = f"bench-noisy-{int(time.time())}"
    try:
        server.start()
        note(f"rate limit: {device} posts as fast as it can for {seconds} s, a probe posts for another device")
        stop = slowclients.new_event()
        probe = slowclients.start_probe(server.port, seconds + 5, stop, interval=0.2)
        began = time.monotonic()
        result = load.run_wrk(server.port, f"/devices/{device}/readings/", seconds, threads=1,
                              connections=connections)
        elapsed = time.monotonic() - began
        stop.set()
        probed = probe.result(60)
        _, sums = scrape(server.port)
    finally:
        server.stop()
    stored = database.query("SELECT COUNT(*) FROM readings WHERE device_uuid = ?", (device,))[0][0]
    database.close()
    allowed = 100 + 10 * elapsed  # the burst, and 10 a second
    refused = result.requests - result.ok
    close = abs(stored - allowed) <= 0.1 * allowed
    # Requests in flight when wrk stops are answered (and stored or counted) but not seen by wrk: one a connection.
    counted = sums.get("canary_rate_limited_total", 0)
    p99 = probed.percentile(0.99) if probed else None
    return [
        Row(f"Rate limit: one device posting as fast as it can for {seconds} s (wrk, {connections} connections), "
            "default limit 10/s with a burst of 100",
            f"{stored:,} stored of {result.requests:,} sent ({allowed:,.0f} allowed), "
            f"{refused:,} × 429 · {counted:,.0f} counted in /metrics",
            "stored within 10% of allowed; the rest 429", close and 0 <= stored - result.ok <= connections
            and 0 <= counted - refused <= connections),
        Row("Rate limit: meanwhile another device's POST and /health every 200 ms",
            "the probe overran" if probed is None else f"p99 {p99 * 1000:.1f} ms · {probed.count} requests, "
            f"{probed.failed} not 2xx", "p99 ≤ 25 ms, 0 not 2xx",
            probed is not None and probed.failed == 0 and p99 <= 0.025),
    ]


class Sender:
    """POSTs readings with Idempotency-Keys to a server whose port may change as it is killed and started again."""

    def __init__(self, port):
        self.port, self.acknowledged, self.lock = port, {}, threading.Lock()
        self.sent, self.kill_after, self.killed = 0, None, threading.Event()

    def send(self, number, run):
        """POST reading `number` with its key; record a 201's body. Return the status, or None if the server was
        gone."""
        body = json.dumps({"type": "temperature", "value": number % 101, "date_created": run + number})
        connection = http.client.HTTPConnection(load.HOST, self.port, timeout=30)
        try:
            connection.request("POST", f"/devices/bench-idem-{number % 200}/readings/", body,
                               {**load.HEADERS, IDEMPOTENCY_KEY: f"{run}-{number}"})
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        with self.lock:
            self.sent += 1
            if response.status == 201:
                first = self.acknowledged.setdefault(number, answer)
                assert first == answer, f"key {number} answered {first!r} then {answer!r}"
            if self.kill_after is not None and self.sent >= self.kill_after:
                self.kill_after = None
                self.killed.set()
        return response.status


def bench_idempotency(url, backend, workers, keys=10_000):
    """Send each of `keys` readings two or three times with its key, some at once, some across a kill -9."""
    run = 2_000_000_000 + int(time.time()) % 100_000 * 100_000
    server = launchers.new_server("api-idempotency", launchers.production, "app:app", workers, DATABASE_URL=url,
                                  CANARY_AUTH="open", CANARY_REQUEST_LOG="")
    rng = random.Random(23)
    statuses = {}
    note(f"idempotency, {backend}: {keys:,} keys sent two or three times, across a kill -9")
    try:
        server.start()
        sender = Sender(server.port)
        sends = []
        for number in range(keys):
            sends += [number] * rng.choice((2, 3))
        rng.shuffle(sends)
        half = len(sends) // 2
        # Adjacent sends of one key go out on parallel connections: retries while the first is in flight.
        with ThreadPoolExecutor(16) as pool:
            for status in pool.map(lambda number: sender.send(number, run), sends[:half]):
                statuses[status] = statuses.get(status, 0) + 1
            # The whole server dies a quarter of the way through the second half, with requests in flight.
            sender.kill_after = half + (len(sends) - half) // 4
            killer = threading.Thread(target=lambda: sender.killed.wait(600) and server.kill())
            killer.start()
            for status in pool.map(lambda number: sender.send(number, run), sends[half:]):
                statuses[status] = statuses.get(status, 0) + 1
            killer.join()
        server.start()
        sender.port = server.port
        pending = list(range(keys))
        # Every key again until each has its 201: a key claimed by a request the kill cut short answers 409 until
        # its lease (CANARY_IDEMPOTENCY_LEASE_SECONDS, 30 s) runs out.
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda number: sender.send(number, run), pending))
            pending = [number for number, status in zip(pending, answers) if status != 201]
            if pending:
                time.sleep(1)
    finally:
        server.stop()
    database = fixtures.Database(url)
    counts = database.query("SELECT date_created, COUNT(*) FROM readings WHERE device_uuid LIKE ? "
                            "AND date_created >= ? AND date_created < ? GROUP BY date_created",
                            ("bench-idem-%", run, run + keys))
    database.close()
    stored = {date - run: count for date, count in counts}
    twice = sum(1 for count in stored.values() if count > 1)
    lost = sum(1 for number in sender.acknowledged if number not in stored)
    shown = ", ".join(f"{'gone' if status is None else status} ×{count:,}" for status, count in
                      sorted(statuses.items(), key=str))
    return [Row(f"Idempotency, {backend}: {keys:,} keys sent 2-3 times ({len(sends):,} POSTs), some at once, half "
                "of them across a kill -9 of the whole server, then every key again",
                f"{len(stored):,} keys stored, {twice} twice, {lost} acknowledged and lost, {len(pending)} never "
                f"acknowledged · first passes: {shown}", "each key once, 0 lost",
                len(stored) == keys and twice == 0 and lost == 0 and not pending)]


def bench_schemathesis(url):
    """Run schemathesis's CLI from outside against the production command's /openapi.json."""
    server = launchers.new_server("api-schemathesis", launchers.production, "app:app", 2, DATABASE_URL=url,
                                  CANARY_AUTH="open", CANARY_REQUEST_LOG="")
    note("schemathesis from outside against /openapi.json")
    try:
        server.start()
        began = time.monotonic()
        # A batch over the document's maxItems is refused with the 413 the document gives it.
        statuses = ", ".join(f'"{status}"' for status in [*NegativeDataRejectionConfig().expected_statuses, "413"])
        config = launchers.DATA_DIR / "schemathesis.toml"
        config.write_text(f"[checks.negative_data_rejection]\nexpected-statuses = [{statuses}]\n")
        # One worker: CPython 3.11.7 can raise a spurious SystemError parsing ASTs in threads (python/cpython#106905).
        done = subprocess.run(
            [launchers.PYTHON, "-m", "schemathesis.cli", "--config-file", str(config), "run",
             f"http://{load.HOST}:{server.port}/openapi.json", "--checks", "all", "--exclude-checks",
             "positive_data_acceptance", "--max-examples", "50", "--workers", "1", "--no-color"],
            capture_output=True, text=True, timeout=1800, cwd=launchers.DATA_DIR)  # its .schemathesis folder there
        seconds = time.monotonic() - began
    finally:
        server.stop()
    summary = [line.strip() for line in done.stdout.splitlines() if line.strip()][-3:]
    (launchers.DATA_DIR / "schemathesis.log").write_text(done.stdout + done.stderr)
    return [Row("Schemathesis from outside: every operation of /openapi.json, all checks but "
                "positive_data_acceptance (413 a rejection too), 50 examples each",
                f"exit {done.returncode} in {seconds:.0f} s · {' '.join(summary)[:200]}", "no failures",
                done.returncode == 0)]
