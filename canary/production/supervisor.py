"""The production command, `python serve.py`: nginx in front, the app in granian's WSGI workers behind it.

nginx (nginx.conf) takes the public address, reads each request whole and buffers each response,
so slow clients never hold an app thread. Each app worker is a granian process of its own on a Unix
socket of its own, and nginx hands each request to the worker with the fewest requests in hand, so
a worker busy with a long listing or summary gets no new requests while another is free.
Settings come from the environment: BIND (host:port) or PORT, WEB_CONCURRENCY, WEB_THREADS,
ACCESS_LOG, WSGI_APP (default app:app), NGINX_USER (as root only: the user nginx's workers run as,
default nobody), and every setting the app itself reads (DATABASE_URL, CANARY_AUTH, MAX_BATCH, ...).
Only nginx can reach the app's sockets: they live in a private folder, readable by this user alone,
or, as root, by root and nginx's worker user alone.
SIGTERM or SIGINT stops both gracefully.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flask import Config

from canary.production import granian_log
from canary.production.nginx import (
    find_nginx,
    hand_socket_to_nginx,
    listen_address,
    make_private_runtime,
    make_proxy_counts,
    nginx_config,
)
from configmodule import database_uri, load_settings

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
STOP_TIMEOUT = 20


def app_settings():
    """Return the app's settings, as create_app reads them from this process's environment."""
    settings = load_settings(Config(ROOT))
    settings["SQLALCHEMY_DATABASE_URI"] = database_uri(settings)
    return settings


def worker_count(environ):
    """Return the number of app worker processes: WEB_CONCURRENCY, else one per CPU."""
    return int(environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)


def worker_threads(environ, settings):
    """Return the app threads per worker: WEB_THREADS, else 1 on SQLite and 8 on PostgreSQL.

    On SQLite writers take turns, so more threads only contend for the GIL. On PostgreSQL
    concurrent single-reading POSTs share commits, which takes several threads per process.
    """
    if environ.get("WEB_THREADS"):
        return int(environ["WEB_THREADS"])
    return 1 if settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") else 8


def app_socket(runtime, index=0):
    """Return the Unix socket of one app server, which nginx forwards to."""
    return runtime / f"app-{index}.sock"


def worker_sockets(environ, runtime):
    """Return the Unix sockets of the app workers, one per worker."""
    return [app_socket(runtime, index) for index in range(worker_count(environ))]


def granian_commands(environ, settings, runtime):
    """Return one granian command per worker, each on a Unix socket of its own, with its socket."""
    threads = worker_threads(environ, settings)
    if threads > 2 * (os.cpu_count() or 1) + 1:
        print(f"serve: {threads} app threads per worker on {os.cpu_count()} cores, as WEB_THREADS or the "
              "database asks: on PostgreSQL they mostly wait for the commits they share", file=sys.stderr, flush=True)
    log_config = granian_log.write_config(runtime / "granian-log.json")
    return [([
        sys.executable, "-m", "granian", environ.get("WSGI_APP") or "app:app",
        "--interface", "wsgi",
        "--uds", str(socket), "--uds-permissions", "0600",
        "--workers", "1",
        "--blocking-threads", str(worker_threads(environ, settings)),
        "--respawn-failed-workers",
        "--workers-kill-timeout", str(STOP_TIMEOUT // 2),
        "--log-level", "warning",
        "--log-config", str(log_config),
    ], socket) for socket in worker_sockets(environ, runtime)]


def wait_for_socket(path, process, timeout):
    """Return once the app accepts connections on its socket; fail if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve: the app exited with status {process.returncode} while starting")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"serve: the app did not listen on {path} within {timeout} s")


def stop(process, signum):
    """Ask a process to stop with a signal, then kill what is left of its process group."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # e.g. nginx workers whose master was killed
    except ProcessLookupError:
        pass
    process.wait()


def main(app_commands=granian_commands, app_name="granian", front_config=nginx_config):
    """Start the app servers (granian unless told otherwise), then nginx in front; run until told to stop.

    `app_commands(environ, settings, runtime)` returns (command line, Unix socket) pairs: each
    command starts an app server that listens on its socket in the runtime folder.
    `front_config(environ, settings, runtime, sockets)` returns nginx's configuration for them.
    """
    nginx = find_nginx()
    if nginx is None:
        raise SystemExit("serve: nginx is not installed; install it first (Debian: apt-get install nginx-light)")
    environ = dict(os.environ)
    settings = app_settings()
    runtime = make_private_runtime(environ)
    worker_environ = dict(environ)
    if settings["METRICS"]:
        # Each worker counts into files of its own slot here (canary/monitoring/instruments.py).
        metrics = runtime / "metrics"
        metrics.mkdir(mode=0o700)
        make_proxy_counts(environ, runtime)
        worker_environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: stopping.append(signum))
    apps, front = [], None
    try:
        # Each in a process group of its own, so that stopping one also stops whatever it left behind.
        commands = app_commands(environ, settings, runtime)
        for slot, (command, _) in enumerate(commands):
            apps.append(subprocess.Popen(command, cwd=ROOT, process_group=0,
                                         env={**worker_environ, "WORKER_SLOT": str(slot)}))
        for app, (_, path) in zip(apps, commands):
            wait_for_socket(path, app, START_TIMEOUT)
            hand_socket_to_nginx(environ, path)
        sockets = [path for _, path in commands]
        (runtime / "nginx.conf").write_text(front_config(environ, settings, runtime, sockets))
        front = subprocess.Popen([nginx, "-p", str(runtime), "-c", str(runtime / "nginx.conf"),
                                  "-g", "daemon off;"], process_group=0)
        scheme = "https" if settings["TLS_CERTIFICATE"] else "http"
        print(f"serve: listening on {scheme}://{listen_address(environ)} (nginx, pid {front.pid}) in front of "
              f"{app_name} (pids {', '.join(str(app.pid) for app in apps)}); runtime files in {runtime}",
              file=sys.stderr, flush=True)
        while not stopping and front.poll() is None and all(app.poll() is None for app in apps):
            time.sleep(0.2)
        if not stopping:
            failed = "nginx" if front.poll() is not None else "the app"
            print(f"serve: {failed} exited unexpectedly; stopping", file=sys.stderr, flush=True)
            return 1
        return 0
    finally:
        if front is not None:
            stop(front, signal.SIGQUIT)  # graceful: finish the requests in flight
        for app in apps:
            if app.poll() is None:
                app.send_signal(signal.SIGTERM)  # all at once, so that they stop in parallel
        for app in apps:
            stop(app, signal.SIGTERM)
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
