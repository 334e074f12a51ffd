"""The servers the benchmarks drive: one class that starts, watches and stops a server, and each design's command.

A launcher is a function (port, wsgi_app, workers) -> Launch: the command line and environment that
start one server design on 127.0.0.1:port with `workers` worker processes. new_server() turns a
launcher into a Server: started from the repo root in a session of its own, ready once /health
answers, stopped with every process it started.
"""
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DATA_DIR = BENCH / "data"
PYTHON = sys.executable
HOST = "127.0.0.1"
GUNICORN_CONFIG = BENCH / "gunicorn_sync.conf.py"
# The service as it was before its production launcher: `gunicorn app:app`, 2 sync workers.
FIRST_RELEASE = "55a73e1dc9059de1644eed358cc1881dd3419021"
# The last release before the code moved into the canary package, measured through its own production command.
PREVIOUS_RELEASE = "b19ead995e99a2efa4553a72f65ccdc5680e1ade"
# Settings the servers read from the environment; each server gets them explicitly, never inherited.
SERVER_SETTINGS = {"DATABASE_URL", "BIND", "PORT", "WEB_CONCURRENCY", "WEB_THREADS", "WSGI_APP", "ACCESS_LOG",
                   "CANARY_ROLE", "CANARY_AUTH", "MAX_BATCH", "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH",
                   "GUNICORN_CMD_ARGS", "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS", "PYTHONPATH"}


NO_RATE_LIMITS = {"CANARY_LIMIT_DEVICE_WRITES": "0", "CANARY_LIMIT_INGEST_TOKEN": "0", "CANARY_LIMIT_READ_TOKEN": "0"}


# -- Launchers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """How to start one server: its command line, its settings, and the Python module its workers run."""

    argv: list
    env: dict = field(default_factory=dict)
    # Workers are the processes running `python -m <worker_module>` whose parent runs it too.
    worker_module: str | None = None
    cwd: Path = REPO  # where it starts: the repo root, or a release extracted from its history


def behind_nginx(script, worker_module):
    """Return a launcher for a serve.py-style script: nginx on the port, the app on a Unix socket."""
    def launch(port, wsgi_app, workers):
        return Launch([PYTHON, script], {"BIND": f"{HOST}:{port}", "WEB_CONCURRENCY": str(workers),
                                         "WSGI_APP": wsgi_app}, worker_module)
    return launch


production = behind_nginx("serve.py", "granian")  # the production command: nginx + granian


def gunicorn(*options):
    """Return a launcher for gunicorn with bench/gunicorn_sync.conf.py, plus options."""
    def launch(port, wsgi_app, workers):
        return Launch([PYTHON, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), *options, wsgi_app],
                      {"BIND": f"{HOST}:{port}", "WEB_CONCURRENCY": str(workers)}, "gunicorn")
    return launch


gunicorn_sync = gunicorn()  # the server before the production command: gunicorn's sync workers


def release_source(commit, *paths):
    """Return a folder holding these paths of a commit, extracted from the repo's history once.

    Never its tests, which pytest would collect from bench/data.
    """
    folder = DATA_DIR / f"release-{commit[:12]}"
    if not (folder / "app.py").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, *paths], capture_output=True)
        if archive.returncode != 0:
            raise RuntimeError(f"cannot read commit {commit[:7]} from git (a shallow clone?): "
                               f"{archive.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
    return folder


def first_release_source():
    """Return a folder holding the app of FIRST_RELEASE: its top-level modules and gunicorn.conf.py."""
    return release_source(FIRST_RELEASE, ":(glob)*.py")


def previous_release(port, wsgi_app, workers):
    """Return PREVIOUS_RELEASE's production command, `python serve.py` of its own code."""
    folder = release_source(PREVIOUS_RELEASE, ":(glob)*.py", "nginx.conf", "static", "templates")
    return Launch([PYTHON, "serve.py"], {"BIND": f"{HOST}:{port}", "WEB_CONCURRENCY": str(workers),
                                         "WSGI_APP": wsgi_app}, "granian", folder)


def gunicorn_first_release(port, wsgi_app, workers):
    """Return the first release's command: its own code under gunicorn's sync workers, with its own gunicorn.conf.py."""
    folder = first_release_source()
    return Launch([PYTHON, "-m", "gunicorn", "--chdir", str(folder), "--config", str(folder / "gunicorn.conf.py"),
                   wsgi_app], {"BIND": f"{HOST}:{port}", "WEB_CONCURRENCY": str(workers)}, "gunicorn")


def granian_direct(port, wsgi_app, workers):
    """Return granian's command on TCP: workers of 1 blocking thread, the fastest for single POSTs on SQLite."""
    return Launch([PYTHON, "-m", "granian", wsgi_app, "--interface", "wsgi", "--host", HOST, "--port", str(port),
                   "--workers", str(workers), "--blocking-threads", "1", "--log-level", "warning"],
                  worker_module="granian")


def waitress(threads, connection_limit):
    """Return a launcher for waitress: one process of `threads` threads, poll() for many connections."""
    def launch(port, wsgi_app, workers):
        return Launch([PYTHON, "-m", "waitress", f"--listen={HOST}:{port}", f"--threads={threads}",
                       f"--connection-limit={connection_limit}", "--asyncore-use-poll", wsgi_app])
    return launch


def new_server(name, launcher, wsgi_app="app:app", workers=2, log_path=None, rate_limits=False, **settings):
    """Return a Server, not yet started, of one design running wsgi_app, with these environment settings.

    Its rate limits are off unless rate_limits=True keeps the app's defaults: a benchmark drives one
    device far beyond any device's limit, and the rows that measure the limits say so.
    """
    port = free_port()
    launch = launcher(port, wsgi_app, workers)
    env = {key: value for key, value in os.environ.items()
           if key not in SERVER_SETTINGS and not key.startswith(("GRANIAN_", "CANARY_"))}
    env.update(launch.env)
    if not rate_limits:
        env.update(NO_RATE_LIMITS)
    if wsgi_app.startswith("echo_app"):
        env["PYTHONPATH"] = str(BENCH)
    env.update(settings)
    return Server(name, launch.argv, env, port, workers if launch.worker_module else 0, launch.worker_module,
                  log_path, launch.cwd)


# -- The server ---------------------------------------------------------------------------------------


class Server:
    """A server process started from the repo root in a session of its own, listening on 127.0.0.1:port."""

    def __init__(self, name, argv, env, port, workers=0, worker_module=None, log_path=None, cwd=REPO):
        self.name, self.argv, self.env, self.port, self.cwd = name, argv, env, port, cwd
        self.workers, self.worker_module = workers, worker_module
        self.log_path = log_path or DATA_DIR / f"{name}.log"
        self.process = None

    def start(self, timeout=60):
        """Start the server; return it once /health answers 200 and its workers are up."""
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.healthy() and len(self.worker_pids()) >= self.workers:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /health in {timeout} s:\n{self.log_tail()}")

    def healthy(self, timeout=2.0):
        """Return whether GET /health answers 200."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def wait_healthy(self, timeout):
        """Return whether /health answered 200 within timeout seconds; fail if the server has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return True
            time.sleep(0.1)
        return False

    def descendants(self):
        """Return the pids of every process below the server's own, children first."""
        found, pending = [], [self.process.pid]
        while pending:
            for children in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
                try:
                    pids = [int(pid) for pid in children.read_text().split()]
                except OSError:
                    continue
                found += pids
                pending += pids
        return found

    def worker_pids(self):
        """Return the pids of the app's worker processes (for granian and gunicorn, not their master)."""
        if not self.worker_module:
            return []
        marker = b"\0-m\0" + self.worker_module.encode() + b"\0"
        return [pid for pid in self.descendants()
                if marker in _cmdline(pid) and marker in _cmdline(_parent(pid))]

    def session_processes(self):
        """Return the pids of every process in the server's session, whatever its process group."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == self.process.pid:  # the session id, which start_new_session set to our pid
                pids.append(int(stat.parent.name))
        return pids

    def log_tail(self, lines=15):
        """Return the end of the server's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self):
        """Kill every process of the server at once with SIGKILL, as a power cut would."""
        self.stop(timeout=None)

    def stop(self, timeout=25):
        """Stop the server with SIGTERM (None: at once with SIGKILL), then SIGKILL every process group left in its
        session."""
        if self.process is None:
            return
        if self.process.poll() is None and timeout is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # serve.py puts nginx and granian in groups of their own, so the session is what holds them all.
        groups = {self.process.pid}
        for pid in self.session_processes():
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
        while self.session_processes() and time.monotonic() < deadline:  # the port is free once they are all gone
            time.sleep(0.05)


def _cmdline(pid):
    """Return a process's command line as NUL-separated bytes, with a leading NUL; empty if it is gone."""
    try:
        return b"\0" + Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid):
    """Return a process's parent pid, or 0 if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
