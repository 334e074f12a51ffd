"""The production command (`python serve.py`) as a subprocess: start it, talk to it, stop or kill it."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60
# Settings a server reads from the environment; each server gets them explicitly, never inherited.
SERVER_SETTINGS = {"DATABASE_URL", "BIND", "PORT", "WEB_CONCURRENCY", "WEB_THREADS", "WSGI_APP", "ACCESS_LOG",
                   "CANARY_ROLE", "CANARY_AUTH", "MAX_BATCH", "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH",
                   "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS"}


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, method, path, body=None, headers=None, timeout=30, tls=None):
    """Send one request on a fresh connection (HTTPS with an SSLContext as tls); return (status, parsed JSON or
    text, headers)."""
    if tls is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    try:
        data = body if body is None or isinstance(body, (bytes, str)) else json.dumps(body)
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw), response.headers
    except ValueError:
        return response.status, raw.decode(errors="replace"), response.headers


def raw_exchange(port, data, timeout=10):
    """Send raw bytes and return (status, headers text, body bytes) of the one response they get.

    The request should ask for `Connection: close`; half-closing the socket instead would make nginx
    take the request as abandoned.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while not _complete(received):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # after refusing a body, nginx may reset rather than read it
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    return status, head.decode(errors="replace"), body


def _complete(received):
    """Tell whether `received` holds a whole response with a Content-Length."""
    head, separator, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(separator and length and len(body) >= int(length.group(1)))


def require_nginx():
    """Skip the test when nginx is missing, or fail it where CANARY_REQUIRE_NGINX says it must run."""
    from canary.production.nginx import find_nginx

    if find_nginx() is None:
        reason = "the production command needs nginx (Debian: apt-get install nginx-light)"
        if os.environ.get("CANARY_REQUIRE_NGINX"):
            pytest.fail(reason)
        pytest.skip(reason)


# Rate limits are off unless a test sets them, as in the testing settings: most tests post faster than a device.
NO_RATE_LIMITS = {"CANARY_LIMIT_DEVICE_WRITES": "0", "CANARY_LIMIT_INGEST_TOKEN": "0", "CANARY_LIMIT_READ_TOKEN": "0"}


class ProductionServer:
    """One `python serve.py` in its own session, with only the settings given (and no rate limits unless given)."""

    def __init__(self, log_path, database_url, workers=2, tls=None, **settings):
        self.port, self.tls = free_port(), tls
        self.log_path = log_path
        self.env = {key: value for key, value in os.environ.items() if key not in SERVER_SETTINGS}
        self.env.update({"DATABASE_URL": database_url, "BIND": f"127.0.0.1:{self.port}",
                         "WEB_CONCURRENCY": str(workers), "CANARY_AUTH": "open", **NO_RATE_LIMITS, **settings})
        self.process = None

    def start(self):
        """Start the server and return once /health answers 200."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve.py exited with {self.process.returncode}:\n{self.log()}")
            try:
                if call(self.port, "GET", "/health", timeout=5, tls=self.tls)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve.py on port {self.port} not healthy after {START_TIMEOUT} s:\n{self.log()}")

    def log(self):
        """Return what the server has written to its log."""
        return self.log_path.read_text(errors="replace")

    def runtime_dir(self):
        """Return the folder of the server's socket and nginx files, as its start-up line names it."""
        return Path(re.search(r"runtime files in (\S+)", self.log()).group(1))

    def processes(self):
        """Return the pids of every process in the server's session."""
        pids = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid:  # the session id, which start_new_session set to our pid
                pids.append(int(status.parent.name))
        return pids

    def app_workers(self):
        """Return the pids of the granian processes that run the app (not their master)."""
        workers = []
        for pid in self.processes():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                parent_command = Path(f"/proc/{parent}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"granian" in command and b"granian" in parent_command:
                workers.append(pid)
        return workers

    def stop(self, timeout=30):
        """Send SIGTERM and return the exit status once the server has stopped."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self):
        """Kill every process of the server at once, as a power cut or the OOM killer would."""
        groups = {self.process.pid}
        for pid in self.processes():
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                pass
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self):
        """Stop the server if it still runs, killing whatever lingers."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None:
            self.kill()
