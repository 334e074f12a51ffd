"""Slow clients and a normal client's probe, each in a process of its own, for the server benchmarks.

SlowClients keeps N connections that send a request one byte a second (headers, or a body after
whole headers) in one asyncio loop, reconnecting whenever the server drops one, so the pressure
stays constant. probe() times a normal client's POST and GET /health on fresh connections every
0.2 s. slow_read() reads a long response at a steady rate and checks that it is whole, valid JSON.
Each runs in its own process, so 64 idle sockets never sit in the probe's event loop or GIL, and
every run has a deadline after which its process is killed, so a stalled server cannot hang a run.
"""
import asyncio
import http.client
import json
import math
import multiprocessing
import queue
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
PROBE_DEVICE = "bench-probe"
SLOW_DEVICE = "bench-slow"
BODY_LENGTH = 1000
_context = multiprocessing.get_context("fork")


class InProcess:
    """A call of function(*args) running in a child process of its own."""

    def __init__(self, function, *args):
        self._results = _context.Queue()
        self._process = _context.Process(target=_call_and_queue, args=(function, args, self._results), daemon=True)
        self._process.start()

    def result(self, timeout):
        """Return the call's result, or None if it has not finished within timeout (it is then killed)."""
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            _end(self._process)


def run_in_process(function, args, timeout):
    """Call function(*args) in a child process and return its result, or None if it ran out of time."""
    return InProcess(function, *args).result(timeout)


def _end(process):
    """Give a child process a moment to exit after its result, then kill it if it has not."""
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join(timeout=5)


def _call_and_queue(function, args, results):
    """Run in the child: put the function's result on the queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops this process
    results.put(function(*args))


# -- Slow clients ------------------------------------------------------------------------------------


def slow_request(kind, padding=200):
    """Return (sent at once, then sent one byte a second) for a slow-header or slow-body request.

    Either part is longer than any measurement window at one byte a second, so no request finishes.
    """
    if kind == "header":
        headers = (f"GET /health HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: canary-bench-slow-header\r\n"
                   f"X-Padding: {'a' * padding}\r\n\r\n")
        return b"", headers.encode()
    if kind == "body":
        headers = (f"POST /devices/{SLOW_DEVICE}/readings/ HTTP/1.1\r\nHost: {HOST}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {BODY_LENGTH}\r\n\r\n")
        body = b'{"type": "temperature", "value": 20}'.ljust(BODY_LENGTH)
        return headers.encode(), body
    raise ValueError(f"unknown slow client kind {kind!r}")


@dataclass
class SlowStats:
    """What the slow clients saw: connections opened, and how the server ended the ones it dropped."""

    clients: int = 0
    opened: int = 0
    connect_failures: int = 0
    dropped: Counter = field(default_factory=Counter)  # "408", "400", "closed", "reset", ...

    def describe(self):
        """Return a short account, e.g. '64 opened, 0 dropped'."""
        drops = sum(self.dropped.values())
        text = f"{self.opened} connections opened, {drops} dropped by the server"
        if drops:
            text += " (" + ", ".join(f"{how} ×{count}" for how, count in self.dropped.most_common()) + ")"
        if self.connect_failures:
            text += f", {self.connect_failures} connects failed"
        return text


async def _slow_connection(port, kind, delay, stats, stopping, stopped):
    """Keep one slow request going, reconnecting when the server drops it, until told to stop.

    stopping is an asyncio.Event and stopped a task that finishes once it is set.
    """
    burst, trickle = slow_request(kind)
    await asyncio.sleep(delay)
    while not stopping.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout=5)
        except (TimeoutError, OSError):
            stats.connect_failures += 1
            await _sleep_unless(stopping, 1.0)
            continue
        stats.opened += 1
        answer = asyncio.ensure_future(reader.read(64))
        try:
            if burst:
                writer.write(burst)
                await writer.drain()
            for byte in trickle:
                if stopping.is_set() or answer.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.wait([answer, stopped], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            pass
        if not stopping.is_set():
            stats.dropped[_how_dropped(answer)] += 1
        answer.cancel()
        writer.close()


def _how_dropped(answer):
    """Name how the server ended a slow request: its status code, a close, or a reset."""
    if not answer.done() or answer.cancelled():
        return "write failed"
    if answer.exception() is not None:
        return "reset"
    data = answer.result()
    if data.startswith(b"HTTP/"):
        return data.split(b" ", 2)[1].decode(errors="replace")
    return "closed" if not data else "other"


async def _sleep_unless(stopping, seconds):
    """Sleep, waking early if stopping is set."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _run_slow_clients(port, groups, ready, stop_event):
    """Run every slow connection until the stop event (a multiprocessing.Event) is set."""
    stopping = asyncio.Event()
    stopped = asyncio.ensure_future(stopping.wait())
    stats = {kind: SlowStats(clients=count) for kind, count in groups}
    tasks = []
    for kind, count in groups:
        for index in range(count):
            # Spread the clients over the second, so that their bytes do not arrive in bursts.
            tasks.append(asyncio.ensure_future(
                _slow_connection(port, kind, index / max(count, 1), stats[kind], stopping, stopped)))
    await asyncio.sleep(1.0)  # every client has begun its connection
    ready.set()
    while not stop_event.is_set():
        await asyncio.sleep(0.1)
    stopping.set()
    await asyncio.wait(tasks, timeout=5)
    return stats


def _slow_clients_main(port, groups, ready, stop_event, results):
    """Run in the child process: the asyncio loop of every slow client."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.put(asyncio.run(_run_slow_clients(port, groups, ready, stop_event)))


class SlowClients:
    """A context manager that keeps slow clients connected to a server while its body runs.

    groups is a sequence of (kind, count), kind "header" or "body". After the block, `stats` maps
    each kind to its SlowStats (None for a kind whose process had to be killed).
    """

    def __init__(self, port, groups):
        self.port, self.groups = port, [(kind, count) for kind, count in groups if count]
        self.stats = {}
        self._process = None

    def __enter__(self):
        if not self.groups:
            return self
        self._ready, self._stop, self._results = _context.Event(), _context.Event(), _context.Queue()
        self._process = _context.Process(target=_slow_clients_main, daemon=True,
                                         args=(self.port, self.groups, self._ready, self._stop, self._results))
        self._process.start()
        if not self._ready.wait(timeout=15):
            self.__exit__(None, None, None)
            raise RuntimeError("the slow clients did not start within 15 s")
        return self

    def __exit__(self, *exc_info):
        if self._process is None:
            return
        self._stop.set()
        try:
            self.stats = self._results.get(timeout=15)
        except queue.Empty:
            self.stats = {kind: None for kind, _ in self.groups}
        _end(self._process)
        self._process = None


# -- The probe: a normal client ----------------------------------------------------------------------


@dataclass
class ProbeResult:
    """A normal client's requests: each one's seconds, with None for a failure (error, timeout, status)."""

    seconds: list
    failures: Counter
    slow_after: float

    @property
    def count(self):
        """Return how many requests the probe sent."""
        return len(self.seconds)

    @property
    def failed(self):
        """Return how many requests failed."""
        return sum(1 for value in self.seconds if value is None)

    @property
    def slow(self):
        """Return how many requests succeeded but took longer than slow_after."""
        return sum(1 for value in self.seconds if value is not None and value > self.slow_after)

    @property
    def stalls(self):
        """Return how many requests failed or were slow."""
        return self.failed + self.slow

    def percentile(self, fraction):
        """Return the nearest-rank percentile in seconds; a failure counts as infinitely slow."""
        ordered = sorted(math.inf if value is None else value for value in self.seconds)
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def longest(self):
        """Return the longest time any request took to answer (failures excluded), in seconds."""
        answered = [value for value in self.seconds if value is not None]
        return max(answered) if answered else math.nan


def timed_request(port, method, path, body, expect, timeout, headers=None):
    """Send one request on a fresh connection; return (seconds or None, failure reason or None)."""
    began = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body, {**({"Content-Type": "application/json"} if body else {}),
                                                **(headers or {})})
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        return None, "timeout"
    except (OSError, http.client.HTTPException) as error:
        return None, type(error).__name__
    finally:
        connection.close()
    elapsed = time.monotonic() - began
    if response.status != expect:
        return None, f"status {response.status}"
    if elapsed > timeout:
        return None, "timeout"
    return elapsed, None


def probe(port, seconds, interval=0.2, timeout=10.0, slow_after=5.0, headers=None, stop=None):
    """Every `interval` for `seconds`, POST one reading and then GET /health, each on a fresh connection.

    Each tick runs in a thread of its own, so a stalled request does not delay the next tick.
    `headers` go with every request: a device token, for a server in tokens mode. Setting the
    event `stop` ends the probe early.
    """
    samples, lock = [], threading.Lock()
    stamp = int(time.time() * 1000)

    def tick(number):
        body = json.dumps({"type": "temperature", "value": number % 101, "date_created": stamp + number})
        for method, path, payload, expect in (("POST", f"/devices/{PROBE_DEVICE}/readings/", body, 201),
                                              ("GET", "/health", None, 200)):
            outcome = timed_request(port, method, path, payload, expect, timeout, headers)
            with lock:
                samples.append(outcome)

    threads = []
    began = time.monotonic()
    for number in range(max(1, round(seconds / interval))):
        time.sleep(max(0.0, began + number * interval - time.monotonic()))
        if stop is not None and stop.is_set():
            break
        thread = threading.Thread(target=tick, args=(number,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=max(0.1, began + seconds + 2 * timeout + 5 - time.monotonic()))
    with lock:
        finished = list(samples)
    # A tick still unfinished here has a request that outlived its socket timeouts: a failure too.
    missing = 2 * len(threads) - len(finished)
    finished += [(None, "unfinished")] * missing
    return ProbeResult([value for value, _ in finished], Counter(why for _, why in finished if why), slow_after)


def probe_in_process(port, seconds, interval=0.2, timeout=10.0, slow_after=5.0, headers=None):
    """Run probe() in a process of its own; None if it overran its deadline."""
    return run_in_process(probe, (port, seconds, interval, timeout, slow_after, headers), seconds + 3 * timeout + 15)


def start_probe(port, seconds, stop, interval=0.2, timeout=10.0, slow_after=5.0, headers=None):
    """Start probe() in a process of its own until `stop` (an event) is set; result() is None if it overran."""
    return InProcess(probe, port, seconds, interval, timeout, slow_after, headers, stop)


def new_event():
    """Return an event that start_probe's process sees set."""
    return _context.Event()


# -- A slow reader ------------------------------------------------------------------------------------


@dataclass
class ReadResult:
    """What a slow reader received."""

    status: int | None
    received: int
    seconds: float
    valid_json: bool
    rows: int | None
    error: str | None


def slow_read(port, path, rate, timeout=60.0, max_seconds=600.0, receive_buffer=65536):
    """GET path and read the body at `rate` bytes a second; check that it is one complete JSON array.

    A small receive buffer keeps the kernel from reading megabytes ahead, so the server feels the
    reader's pace as a real slow link would make it.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    chunks, received, status, error = [], 0, None, None
    began = time.monotonic()
    try:
        sock.connect((HOST, port))
        connection.sock = sock
        connection.request("GET", path)
        response = connection.getresponse()
        status = response.status
        while time.monotonic() - began < max_seconds:
            allowed = rate * (time.monotonic() - began) - received
            if allowed < 16384:
                time.sleep((16384 - allowed) / rate)
                continue
            chunk = response.read1(int(min(allowed, 65536)))
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
        else:
            error = f"still reading after {max_seconds:.0f} s"
    except (OSError, http.client.HTTPException) as exception:
        error = f"{type(exception).__name__}: {exception}"[:120]
    finally:
        connection.close()
    seconds = time.monotonic() - began
    try:
        parsed = json.loads(b"".join(chunks))
        valid, rows = isinstance(parsed, list), len(parsed) if isinstance(parsed, list) else None
    except ValueError:
        valid, rows = False, None
    return ReadResult(status, received, seconds, valid, rows, error)


def start_slow_read(port, path, rate, max_seconds=600.0):
    """Start slow_read() in a process of its own; its result(max_seconds + 120) is None if it overran."""
    return InProcess(slow_read, port, path, rate, 60.0, max_seconds)
