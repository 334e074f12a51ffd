"""HTTP load for the benchmark: wrk when installed, else a multi-process http.client generator."""
import http.client
import json
import multiprocessing
import os
import queue
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
HEADERS = {"Content-Type": "application/json"}
WRK_SCRIPT = Path(__file__).with_name("post_reading.lua")
FIRST_DATE = 1_900_000_000  # generated readings sit after the loaded history


@dataclass
class LoadResult:
    """What a load run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # failed connections, timeouts and responses other than the expected status
    ok: int  # responses with the expected status

    @property
    def rate(self):
        """Return requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def reading_body(worker, index):
    """Return one reading whose date_created is unique per (worker, index)."""
    reading = {"type": ("temperature", "humidity")[index % 2], "value": index % 101,
               "date_created": FIRST_DATE + worker * 10**8 + index}
    return json.dumps(reading).encode()


def batch_body(worker, index, size=1000):
    """Return a JSON array of `size` readings, unique per (worker, index)."""
    first = FIRST_DATE + worker * 10**8 + index * size
    readings = [{"type": ("temperature", "humidity")[n % 2], "value": n % 101, "date_created": first + n}
                for n in range(size)]
    return json.dumps(readings).encode()


def run_wrk(port, path, seconds, threads=2, connections=16, token=None, devices=1):
    """Drive POSTs of unique readings with wrk for a fixed time, with a bearer token if one is given, spread over
    `devices` devices where the path has _N_ for the device's number."""
    extra = ([token] if token else []) + ([f"devices={devices}"] if devices > 1 else [])
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(WRK_SCRIPT), f"http://{HOST}:{port}{path}"] + (["--", *extra] if extra else [])
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next(line for line in output.stdout.splitlines() if line.startswith("WRK_RESULT "))
    figures = json.loads(line.removeprefix("WRK_RESULT "))
    errors = figures["socket_errors"] + figures["timeouts"] + figures["not_201"]
    return LoadResult(figures["requests"], figures["duration_us"] / 1e6, figures["p50_us"] / 1e3,
                      figures["p99_us"] / 1e3, errors, figures["requests"] - figures["not_201"])


def combine(results):
    """Pool several runs: total requests over total time, the median p50 and the worst p99."""
    return LoadResult(
        sum(result.requests for result in results),
        sum(result.seconds for result in results),
        statistics.median(result.p50_ms for result in results),
        max(result.p99_ms for result in results),
        sum(result.errors for result in results),
        sum(result.ok for result in results),
    )


def wrk_available():
    """Return whether wrk is on PATH."""
    return shutil.which("wrk") is not None


def _drive_connection(port, path, make_body, worker, quota, start_at, stop_at, headers):
    """POST on one connection (reopened when the server closes it) until the quota or the time is up."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    latencies, statuses, failures = [], Counter(), 0
    time.sleep(max(0.0, start_at - time.monotonic()))
    index = 0
    while time.monotonic() < stop_at and (quota is None or index < quota):
        body = make_body(worker, index)
        index += 1
        began = time.monotonic()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            failures += 1
            connection.close()
            continue
        latencies.append(time.monotonic() - began)
        statuses[response.status] += 1
    connection.close()
    return latencies, statuses, failures, time.monotonic()


def _drive_process(spec, results):
    """Run a group of connections as threads inside one process and queue their figures."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops this process
    port, path, make_body, workers, quotas, start_at, stop_at, headers = spec
    figures = [None] * len(workers)

    def run(slot):
        figures[slot] = _drive_connection(port, path, make_body, workers[slot], quotas[slot],
                                          start_at, stop_at, headers)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.monotonic()) + 60)
    results.put([figure for figure in figures if figure is not None])


def _gather(results, processes, deadline):
    """Return one item per process from the queue; fail fast if a process dies or time runs out."""
    groups = []
    while len(groups) < len(processes):
        try:
            groups.append(results.get(timeout=1))
        except queue.Empty:
            failed = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"a load-generating process failed with exit code {failed[0]}") from None
            if time.monotonic() > deadline:
                raise TimeoutError("the load-generating processes did not finish in time") from None
    return groups


def python_load(port, path, make_body, connections=16, seconds=None, total=None,
                expect=201, max_seconds=600, headers=HEADERS):
    """POST bodies on `connections` connections for `seconds`, or `total` requests in all."""
    count = max(1, min(connections, os.cpu_count() or 1))
    quotas = [None] * connections
    if total is not None:
        quotas = [total // connections + (worker < total % connections) for worker in range(connections)]
    start_at = time.monotonic() + 1.0  # time for the processes and threads to start
    stop_at = start_at + (seconds if seconds is not None else max_seconds)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = []
    for group in range(count):
        workers = list(range(group, connections, count))
        spec = (port, path, make_body, workers, [quotas[w] for w in workers], start_at, stop_at, headers)
        processes.append(context.Process(target=_drive_process, args=(spec, results), daemon=True))
    try:
        for process in processes:
            process.start()
        groups = _gather(results, processes, deadline=stop_at + 120)
    except BaseException:
        for process in processes:
            if process.pid is not None:
                process.kill()
        raise
    finally:
        for process in processes:
            if process.pid is not None:
                process.join(timeout=5)
    figures = [figure for group in groups for figure in group]
    if len(figures) != connections:
        raise RuntimeError("a load-generating connection did not finish in time")
    latencies = sorted(latency for figure in figures for latency in figure[0])
    statuses = sum((figure[1] for figure in figures), Counter())
    failures = sum(figure[2] for figure in figures)
    ok = statuses[expect]
    return LoadResult(len(latencies), max(figure[3] for figure in figures) - start_at,
                      percentile(latencies, 0.50) * 1e3, percentile(latencies, 0.99) * 1e3,
                      failures + len(latencies) - ok, ok)


def timed_gets(port, path, count):
    """GET a path `count` times in sequence and return each end-to-end time in seconds."""
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    times = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            times.append(time.perf_counter() - began)
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
    finally:
        connection.close()
    return times


def timed_get_body(port, path):
    """GET a path once and return its body, failing on any status other than 200."""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
        return body
    finally:
        connection.close()


def stream_get(port, path, max_seconds=300):
    """GET a streamed JSON array; return (bytes received, objects counted, seconds, complete)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    received = objects = 0
    last = b""
    began = time.perf_counter()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        while time.perf_counter() - began < max_seconds:
            chunk = response.read1(1 << 20)
            if not chunk:
                break
            received += len(chunk)
            objects += chunk.count(b"{")  # readings hold no nested objects or braces in strings
            last = chunk.rstrip()[-1:] or last
    finally:
        connection.close()
    return received, objects, time.perf_counter() - began, last == b"]"
