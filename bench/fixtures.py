"""Benchmark fixtures: the generated database and the gunicorn servers under test."""
import http.client
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "bench" / "data"
HISTORY_DEVICE = "bench-history"
HISTORY_START = 1_672_531_200  # 2023-01-01T00:00:00Z
YEAR = 365 * 86_400
READING_TYPES = ("temperature", "humidity")
INSERT = "INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)"


class Database:
    """A direct connection to the benchmark database, SQLite or PostgreSQL, in autocommit mode."""

    def __init__(self, url):
        self.url = make_url(url)
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        if self.is_postgres:
            libpq_url = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.connection = psycopg.connect(libpq_url, autocommit=True)
        else:
            self.connection = sqlite3.connect(self.url.database, isolation_level=None)

    def query(self, sql, params=()):
        """Run one statement written with ? placeholders and return its rows."""
        if self.is_postgres:
            sql = sql.replace("?", "%s")
        cursor = self.connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def version(self):
        """Describe the database engine."""
        if self.is_postgres:
            return "PostgreSQL " + self.query("SHOW server_version")[0][0].split()[0]
        return "SQLite file in WAL mode"

    def close(self):
        """Close the connection."""
        self.connection.close()


def default_url():
    """Return the URL of the SQLite file the benchmark uses by default."""
    return f"sqlite:///{DATA_DIR / 'bench.db'}"


def history_rows(count, seed):
    """Yield one device's readings: alternating types, random values, one year in time order."""
    rng = random.Random(seed)
    step = YEAR / count
    for index in range(count):
        yield HISTORY_DEVICE, READING_TYPES[index % 2], rng.randint(0, 100), HISTORY_START + int(index * step)


def generate(url, count, seed=20240101):
    """Recreate the database with the app's create_app, bulk-load the history, then ANALYZE."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        database = Database(url)
        database.query("DROP TABLE IF EXISTS readings")
        database.close()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                   cwd=REPO, env=env, check=True, timeout=300)
    database = Database(url)
    try:
        rows = history_rows(count, seed)
        if database.is_postgres:
            copy_sql = "COPY readings (device_uuid, type, value, date_created) FROM STDIN"
            with database.connection.cursor().copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            database.query("VACUUM ANALYZE readings")
        else:
            database.query("BEGIN")
            database.connection.executemany(INSERT, rows)
            database.query("COMMIT")
            database.query("ANALYZE")
    finally:
        database.close()


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid, field):
    """Return a kB figure (VmRSS, VmHWM) from /proc/<pid>/status, or 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid):
    """Reset a process's VmHWM to its current RSS; return False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


GUNICORN_CONFIG = REPO / "bench" / "gunicorn_sync.conf.py"


class Server:
    """A gunicorn server started from the repo root with bench/gunicorn_sync.conf.py."""

    def __init__(self, name, app_spec, workers, env=None, args=()):
        self.name, self.workers = name, workers
        self.port = free_port()
        self.log_path = DATA_DIR / f"{name}.log"
        self.command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), *args, app_spec]
        self.env = {**os.environ, **(env or {}), "BIND": f"127.0.0.1:{self.port}",
                    "WEB_CONCURRENCY": str(workers)}
        self.process = None

    def start(self, timeout=60):
        """Start the server and return once every worker is up and /health answers 200."""
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.log_tail()}")
            if len(self.worker_pids()) == self.workers and self.healthy():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout} s:\n{self.log_tail()}")

    def healthy(self):
        """Return whether GET /health answers 200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def worker_pids(self):
        """Return the pids of the gunicorn master's children, its workers."""
        pids = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids += [int(pid) for pid in children.read_text().split()]
            except OSError:
                continue
        return pids

    def log_tail(self, lines=20):
        """Return the end of the server's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        """Stop the server with SIGTERM; SIGKILL the master and its workers if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        workers = self.worker_pids()
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


FLEET_SCHEMA = "bench_fleet"  # on PostgreSQL the fleet gets a schema of its own in the same database


def fleet_url(url):
    """Return the URL of the fleet benchmark's database, beside the history's."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return url.set(database=str(Path(url.database).with_name("fleet.db"))).render_as_string(hide_password=False)
    options = f"-csearch_path={FLEET_SCHEMA}"
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


def fleet_rows(devices, per_device, seed):
    """Yield `per_device` temperature readings for each of `devices` devices, over one year."""
    rng = random.Random(seed)
    step = YEAR // per_device
    for device in range(devices):
        for index in range(per_device):
            yield f"bench-fleet-{device:05d}", "temperature", rng.randint(0, 100), HISTORY_START + index * step


def generate_fleet(url, devices, per_device, seed=20240102):
    """Recreate the fleet database with the app's create_app, bulk-load the fleet, then ANALYZE."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        database = Database(url.difference_update_query(["options"]))
        database.query(f'CREATE SCHEMA IF NOT EXISTS "{FLEET_SCHEMA}"')
        database.query(f'DROP TABLE IF EXISTS "{FLEET_SCHEMA}".readings')
        database.close()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"],
                   cwd=REPO, env=env, check=True, timeout=300)
    database = Database(url)
    try:
        rows = fleet_rows(devices, per_device, seed)
        if database.is_postgres:
            copy_sql = "COPY readings (device_uuid, type, value, date_created) FROM STDIN"
            with database.connection.cursor().copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            database.query("VACUUM ANALYZE readings")
        else:
            database.query("BEGIN")
            database.connection.executemany(INSERT, rows)
            database.query("COMMIT")
            database.query("ANALYZE")
    finally:
        database.close()
