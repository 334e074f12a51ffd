"""The production command: addresses, a clean stop, JSON for every error nginx answers, and bounded memory."""
import json
import os
import pwd
import signal
import socket
import stat
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
from serving import ProductionServer, call, free_port, raw_exchange, require_nginx

from app import create_app
from canary.cli.tokens import store_tokens

pytestmark = pytest.mark.production

READING = {"type": "temperature", "value": 21, "date_created": 1000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One production server on SQLite, shared by this module's read-only checks."""
    require_nginx()
    folder = tmp_path_factory.mktemp("serve")
    running = ProductionServer(folder / "serve.log", f"sqlite:///{folder}/serve.db").start()
    yield running
    running.close()


def test_serve_answers_on_bind_and_stops_cleanly_on_sigterm(production, tmp_path, device):
    server = production(f"sqlite:///{tmp_path}/stop.db")
    assert call(server.port, "POST", f"/devices/{device}/readings/", READING)[0] == 201
    status, listing, _ = call(server.port, "GET", f"/devices/{device}/readings/")
    assert (status, listing) == (200, [{**READING, "device_uuid": device}])
    runtime, pids = server.runtime_dir(), server.processes()
    assert len(pids) >= 7  # the launcher, 2 granian masters with a worker each, nginx's master and worker
    assert server.stop() == 0
    assert server.processes() == [] and not runtime.exists()
    assert "Traceback" not in server.log()


def test_serve_takes_port_when_bind_is_unset(production, tmp_path):
    port = free_port()
    server = ProductionServer(tmp_path / "port.log", f"sqlite:///{tmp_path}/port.db")
    del server.env["BIND"]
    server.env["PORT"], server.port = str(port), port
    try:
        server.start()
        assert call(port, "GET", "/health/")[:2] == (200, {"status": "ok"})
    finally:
        server.close()


def test_serve_stops_the_app_when_nginx_dies(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/dies.db")
    nginx_master = min(pid for pid in server.processes() if b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(nginx_master, signal.SIGKILL)
    assert server.process.wait(timeout=30) == 1
    deadline = time.monotonic() + 10
    while server.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.processes() == []


def test_serve_routes_around_a_busy_worker(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/busy.db", workers=2)
    busy = server.app_workers()[0]
    os.kill(busy, signal.SIGSTOP)  # takes requests, answers none, as while it builds a long listing
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = []
            for _ in range(10):  # one at a time: a request waits for its answer, or at most 10 s at the stalled worker
                answers.append(pool.submit(call, server.port, "GET", "/health", timeout=60))
                wait([answers[-1]], timeout=10)
            answered = [answer.result()[0] for answer in answers if answer.done()]
            assert len(answered) >= 9 and set(answered) == {200}  # nginx sent one request, at most, to the stalled one
            os.kill(busy, signal.SIGCONT)
            assert [answer.result()[0] for answer in answers] == [200] * 10
    finally:
        os.kill(busy, signal.SIGCONT)


def head(method, target, *headers, version=b"HTTP/1.1"):
    """Return the bytes of a request head."""
    lines = [method + b" " + target + b" " + version, b"Host: 127.0.0.1", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


MALFORMED = {
    "request line over 16 KB": (head(b"GET", b"/devices/" + b"x" * 20000 + b"/readings/"), 414),
    "lowercase method": (head(b"get", b"/health"), 400),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "unknown HTTP version": (head(b"GET", b"/health", version=b"HTTP/2.0"), 400),
    "control character in path": (head(b"GET", b"/he\x7fth"), 400),
    "bad percent-escape": (head(b"GET", b"/%zz"), 400),
    "path above the root": (head(b"GET", b"/../../etc/passwd"), 400),
    "Content-Length not a number": (head(b"POST", b"/readings/", b"Content-Length: abc"), 400),
    "Content-Length negative": (head(b"POST", b"/readings/", b"Content-Length: -5"), 400),
    "two Content-Lengths": (head(b"POST", b"/readings/", b"Content-Length: 5", b"Content-Length: 6") + b"[1,2]", 400),
    "unknown Transfer-Encoding": (head(b"POST", b"/readings/", b"Transfer-Encoding: gzip"), 400),
    "header over 16 KB": (head(b"GET", b"/health", b"X-Big: " + b"y" * 20000), 431),
    "headers over 64 KB in all": (head(b"GET", b"/health", *(b"X-%d: %s" % (n, b"z" * 15000) for n in range(5))), 431),
    "body over the largest limit": (head(b"POST", b"/readings/", b"Content-Length: 90000000") + b"[", 413),
    "TRACE": (head(b"TRACE", b"/"), 405),
    "nginx's own error page": (head(b"GET", b"/.errors/400"), 404),
    "5,000-character device id": (head(b"GET", b"/devices/" + b"d" * 5000 + b"/readings/"), 422),
    "8 KB query string": (head(b"GET", b"/devices/dev-1/readings/?type=temperature&colour=" + b"r" * 8000), 422),
}


@pytest.mark.parametrize("request_bytes, status", MALFORMED.values(), ids=MALFORMED)
def test_malformed_request_gets_json_error(server, request_bytes, status):
    answer, head_text, body = raw_exchange(server.port, request_bytes)
    assert answer == status, head_text
    assert "content-type: application/json" in head_text.lower()
    error = json.loads(body)
    assert error["code"] == status and error["message"] and error["status"]


def test_large_but_allowed_headers_reach_the_app(server):
    status, body, _ = call(server.port, "GET", "/health", headers={"X-Big": "y" * 9000})
    assert (status, body) == (200, {"status": "ok"})


def test_app_unavailable_behind_nginx_is_json_503(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/gone.db")
    for path in server.runtime_dir().glob("app-*.sock"):
        path.unlink()  # nginx can no longer reach the app
    nginx_master = min(pid for pid in server.processes() if b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(nginx_master, signal.SIGHUP)  # new nginx workers, without the open connections to the app
    deadline = time.monotonic() + 30
    while (answer := call(server.port, "GET", "/health"))[0] != 503:  # once the old workers have gone
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)
    _status, body, headers = answer
    assert body["code"] == 503 and headers["Retry-After"]


def peak_rss_kb(pid):
    """Return a process's peak resident memory (VmHWM) in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


HOSTILE_BODIES = {
    "8 MiB of empty objects": "[" + "{}," * (8 * 1024 * 1024 // 3 - 1) + "{}]",
    "8 MiB of empty arrays in one reading": '{"value": [' + "[]," * (8 * 1024 * 1024 // 3 - 10) + "[]]}",
    "full batch of readings": json.dumps([{**READING, "device_uuid": f"d-{n}", "date_created": n}
                                          for n in range(10_000)]),
    "10,000 readings of a long unknown key": json.dumps([{"k" * 700: n} for n in range(10_000)]),
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
def test_one_request_grows_a_worker_by_less_than_64_mb(production, tmp_path, body):
    server = production(f"sqlite:///{tmp_path}/memory.db", workers=1)
    call(server.port, "POST", "/readings/", [{**READING, "device_uuid": "warm-up"}])
    (worker,) = server.app_workers()
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # restart the peak from the current size
    before = peak_rss_kb(worker)
    status, answer, _ = call(server.port, "POST", "/readings/", body, timeout=60)
    assert status in (201, 413, 422), answer
    assert len(json.dumps(answer)) < 64 * 1024
    assert peak_rss_kb(worker) - before < 64 * 1024


def send_large_body(port, path, size, results, token=None):
    """Send a request with a body of `size` spaces and no token (or this one); record the status it gets, if any."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Content-Length: {size}\r\n"
                         "Connection: close\r\n\r\n".encode())
            chunk, sent = b" " * 65536, 0
            try:
                while sent < size:
                    sent += sock.send(chunk[:size - sent])
            except OSError:
                pass  # nginx may refuse the body before it has all arrived
            received = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
    except OSError as error:
        results.append(repr(error))
        return
    results.append(int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else received[:40])


def test_bursts_of_refused_large_bodies_leave_every_other_client_answered(production, tmp_path):
    """3 rounds of 20 concurrent 8 MiB bodies without a token, to each write route, then with a forged token,
    while a device posts. nginx refuses the anonymous ones; the app reads each forged one to its end."""
    url = f"sqlite:///{tmp_path}/burst.db"
    manager = create_app({"SQLALCHEMY_DATABASE_URI": url, "AUTH": "tokens"})
    with manager.app_context():
        token = store_tokens("device", ["probe"], "burst test")[0]
    server = production(url, CANARY_AUTH="tokens")
    headers = {"Authorization": f"Bearer {token}"}
    stop, probed = threading.Event(), []

    def probe():
        date = 0
        while not stop.is_set():
            date += 1
            for method, path, body in (("POST", "/devices/probe/readings/", {**READING, "date_created": date}),
                                       ("GET", "/health", None)):
                try:
                    probed.append(call(server.port, method, path, body, headers=headers, timeout=10)[0])
                except OSError as error:
                    probed.append(repr(error))

    prober = threading.Thread(target=probe)
    prober.start()
    refused = []
    try:
        for path, forged in (("/devices/x/readings/", None), ("/readings/", None), ("/readings/", "cnry_forged")):
            for _ in range(3):
                with ThreadPoolExecutor(max_workers=20) as pool:
                    for _ in range(20):
                        pool.submit(send_large_body, server.port, path, 8 * 1024 * 1024, refused, forged)
        time.sleep(0.5)  # the probe goes on after the bursts: a worker taken out would stay out for 10 s
    finally:
        stop.set()
        prober.join()
    # Each sender got its own answer: 413 on the device route, whose limit is 1 MiB, and 401 on the other.
    assert Counter(refused) == {413: 60, 401: 120}, refused
    assert len(probed) > 20 and set(probed) <= {200, 201}, [status for status in probed if status not in (200, 201)]
    stored = call(server.port, "GET", "/devices/probe/readings/", headers=headers)[1]
    assert len(stored) == probed.count(201)
    log = server.log()
    assert "temporarily disabled" not in log and "no live upstreams" not in log and "Broken pipe" not in log


@pytest.mark.parametrize("path", ["/readings/", "/devices/dev-1/readings/", "/devices/dev-1/readings"])
def test_anonymous_post_is_refused_by_nginx_as_the_app_refuses_it(production, tmp_path, path):
    server = production(f"sqlite:///{tmp_path}/anonymous.db", CANARY_AUTH="tokens")
    status, body, headers = call(server.port, "POST", path, [READING])
    app_answer = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/app.db", "AUTH": "tokens"}
                            ).test_client().post(path, json=[READING])
    expected = app_answer.get_json()
    assert body.pop("request_id") == headers["X-Request-ID"] and expected.pop("request_id")
    assert (status, body) == (401, expected)
    assert headers["WWW-Authenticate"] == app_answer.headers["WWW-Authenticate"]
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("settings, status", [({"CANARY_AUTH": "open"}, 201), ({"CANARY_ROLE": "query"}, 404)])
def test_anonymous_post_reaches_the_app_where_it_may_answer_otherwise(production, tmp_path, settings, status):
    server = production(f"sqlite:///{tmp_path}/open.db", **{"CANARY_AUTH": "tokens", **settings})
    assert call(server.port, "POST", "/readings/", [{**READING, "device_uuid": "d"}])[0] == status


def test_app_sockets_are_reachable_by_nginx_alone(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/private.db")
    runtime = server.runtime_dir()
    assert stat.S_IMODE(runtime.stat().st_mode) & 0o007 == 0  # no access at all for other users
    sockets = sorted(runtime.glob("app-*.sock"))
    assert len(sockets) == 2
    for path in sockets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    if os.geteuid() != 0:
        return
    nginx_user = pwd.getpwuid(sockets[0].stat().st_uid).pw_name
    assert nginx_user == "nobody" and stat.S_IMODE(runtime.stat().st_mode) == 0o710
    for other in ("daemon", "www-data"):  # any user but root and nginx's own
        assert connect_as(pwd.getpwnam(other), sockets[0]) == "PermissionError", other
    assert connect_as(pwd.getpwnam("nobody"), sockets[0]) == "connected"


def connect_as(user, path):
    """Connect to a Unix socket from a child process running as another user; return what happened."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and exits at once
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
            outcome = b"connected"
        except OSError as error:
            outcome = type(error).__name__.encode()
        os.write(writer, outcome)
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader, "rb") as pipe:
        return pipe.read().decode()


def test_http_09_request_is_closed_unanswered(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health\r\n")
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:  # nginx resets what it closes unanswered (reset_timedout_connection)
            answer = b""
        assert answer == b""
