"""Database failures: a stopped, locked, full or deleted database is a 503 to retry, never a 500, and heals."""
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from serving import call, free_port

from app import create_app
from canary.ingest import group_commit
from models import db

READING = {"type": "temperature", "value": 21, "date_created": 1000}


def assert_retry_later(status, body, headers):
    assert status == 503, body
    assert body["code"] == 503 and body["status"] == "Service Unavailable" and body["message"]
    assert int(headers["Retry-After"]) > 0


@pytest.fixture
def sqlite_app(tmp_path):
    """Build an application on a SQLite file of this test's own."""
    apps = []

    def build(**config):
        apps.append(create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/failing.db", "AUTH": "open",
                                **config}))
        return apps[-1]

    yield build
    for application in apps:
        with application.app_context():
            db.engine.dispose()


def test_sqlite_locked_beyond_busy_timeout_is_503(sqlite_app, tmp_path, device):
    client = sqlite_app(SQLITE_BUSY_TIMEOUT_MS=100).test_client()
    holder = sqlite3.connect(tmp_path / "failing.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for body in (READING, [READING]):
            response = client.post(f"/devices/{device}/readings/", data=json.dumps(body))
            assert_retry_later(response.status_code, response.get_json(), response.headers)
            assert "unavailable or busy" in response.get_json()["message"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.post(f"/devices/{device}/readings/", data=json.dumps(READING)).status_code == 201
    assert len(client.get(f"/devices/{device}/readings/").get_json()) == 1


def test_sqlite_storage_full_is_503_saying_so(sqlite_app, device):
    application = sqlite_app()
    with application.app_context():
        engine = db.engine
    pages = {"limit": 10**9}

    @sa.event.listens_for(engine, "connect")
    def _limit_pages(dbapi_connection, record):
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages['limit']}")

    with application.app_context():
        engine.dispose()
        pages["limit"] = db.session.execute(sa.text("PRAGMA page_count")).scalar_one() + 2
        engine.dispose()  # every connection from here on has the small limit
    client = application.test_client()
    acknowledged = 0
    for batch in range(50):
        readings = [{**READING, "date_created": batch * 1000 + n} for n in range(1000)]
        response = client.post(f"/devices/{device}/readings/", data=json.dumps(readings))
        if response.status_code != 201:
            break
        acknowledged += 1000
    assert_retry_later(response.status_code, response.get_json(), response.headers)
    assert "storage is full" in response.get_json()["message"]
    single = client.post(f"/devices/{device}/readings/", data=json.dumps({**READING, "date_created": 10**8}))
    assert single.status_code in (201, 503)
    pages["limit"] = 10**9
    with application.app_context():
        engine.dispose()
    assert client.post(f"/devices/{device}/readings/", data=json.dumps(READING)).status_code == 201
    listed = client.get(f"/devices/{device}/readings/").get_json()
    assert len(listed) == acknowledged + (single.status_code == 201) + 1


def end_connections(postgres_database_uri, name):
    """End every PostgreSQL connection of one application name from the server's side."""
    engine = sa.create_engine(postgres_database_uri, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            ended = connection.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
            ), {"name": name}).scalars().all()
            assert ended and all(ended)
            # The backends exit after answering. Each statement in autocommit sees activity afresh, where
            # a transaction would keep seeing the snapshot it took first.
            deadline = time.monotonic() + 30
            while connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                                     {"name": name}).scalar():
                assert time.monotonic() < deadline, "the ended backends are still there"
                time.sleep(0.02)
    finally:
        engine.dispose()


def test_postgres_connections_ended_by_the_server_fail_no_request(postgres_database_uri, device):
    name = f"canary-{device}"
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"{postgres_database_uri}&application_name={name}",
                              "AUTH": "open"})
    client = application.test_client()
    path = f"/devices/{device}/readings/"
    assert client.post(path, data=json.dumps(READING)).status_code == 201  # opens the kept connection
    assert client.get(path).status_code == 200  # and a pooled one
    end_connections(postgres_database_uri, name)  # as a restart of the server would
    assert client.post(path, data=json.dumps({**READING, "date_created": 2})).status_code == 201
    assert client.post(path, data=json.dumps([{**READING, "date_created": 3}])).status_code == 201
    assert len(client.get(path).get_json()) == 3
    assert client.get("/health").status_code == 200
    with application.app_context():
        db.engine.dispose()


def test_postgres_connection_ended_between_check_and_insert_is_503_then_heals(postgres_database_uri, device,
                                                                              monkeypatch):
    name = f"canary-{device}"
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"{postgres_database_uri}&application_name={name}",
                              "AUTH": "open"})
    client = application.test_client()
    path = f"/devices/{device}/readings/"
    assert client.post(path, data=json.dumps(READING)).status_code == 201  # prepares the INSERT
    monkeypatch.setattr(group_commit._KeptConnection, "_usable", lambda self: True)  # the end comes after the check
    end_connections(postgres_database_uri, name)
    failed = client.post(path, data=json.dumps({**READING, "date_created": 2}))
    assert_retry_later(failed.status_code, failed.get_json(), failed.headers)
    assert client.post(path, data=json.dumps({**READING, "date_created": 3})).status_code == 201
    assert [reading["date_created"] for reading in client.get(path).get_json()] == [3, 1000]
    with application.app_context():
        db.engine.dispose()


def test_sqlite_files_deleted_under_the_server_heal(production, tmp_path, device):
    database = tmp_path / "deleted.db"
    server = production(f"sqlite:///{database}")
    path = f"/devices/{device}/readings/"
    assert call(server.port, "POST", path, READING)[0] == 201
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    statuses = []
    for attempt in range(6):  # each worker may meet the loss once
        statuses.append(call(server.port, "POST", path, {**READING, "date_created": attempt})[0])
        statuses.append(call(server.port, "GET", path)[0])
        statuses.append(call(server.port, "GET", "/health")[0])
    assert set(statuses) <= {200, 201, 503} and statuses[-3:] == [201, 200, 200], statuses
    status, listing, _ = call(server.port, "GET", path)
    assert status == 200 and len(listing) == statuses[0::3].count(201)
    assert "Traceback" not in server.log()


@pytest.fixture
def small_disk():
    """A 4 MB tmpfs, holding a 1 MB file that can be deleted to free room once it is full."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="canary-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0777", "tmpfs", str(mount)], check=True)
    (mount / "spare").write_bytes(b"\0" * (1024 * 1024))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
    mount.rmdir()


def fill_until_refused(port, device, size=2000):
    """Post batches until one is refused; return (readings acknowledged, the refusal)."""
    acknowledged = 0
    for batch in range(10_000):
        readings = [{**READING, "date_created": batch * size + n} for n in range(size)]
        status, body, headers = call(port, "POST", f"/devices/{device}/readings/", readings, timeout=60)
        if status != 201:
            return acknowledged, (status, body, headers)
        acknowledged += size
    raise AssertionError("the disk never filled")


def assert_full_disk_refused_then_healed(server, small_disk, device):
    """Fill the disk through the server, check the refusal, free room and check the next write."""
    acknowledged, refusal = fill_until_refused(server.port, device)
    assert_retry_later(*refusal)
    assert "storage is full" in refusal[1]["message"]
    (small_disk / "spare").unlink()
    assert call(server.port, "POST", f"/devices/{device}/readings/", {**READING, "date_created": 10**9})[0] == 201
    status, listing, _ = call(server.port, "GET", f"/devices/{device}/readings/")
    assert status == 200 and len(listing) == acknowledged + 1


def test_sqlite_disk_full_under_the_server_is_503_then_heals(production, small_disk, device):
    server = production(f"sqlite:///{small_disk}/full.db")
    assert_full_disk_refused_then_healed(server, small_disk, device)


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, which it may stop, start and fill."""

    def __init__(self, folder):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries and not shutil.which("initdb"):
            pytest.fail("PostgreSQL's initdb is not installed")
        self.bin = Path(binaries[-1] if binaries else shutil.which("initdb")).parent
        self.folder, self.port = folder, free_port()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(folder, "postgres", "postgres")
        self.run("initdb", "-D", str(folder / "data"), "-U", "canary", "--auth=trust", "-E", "UTF8")
        self.url = f"postgresql+psycopg://canary@127.0.0.1:{self.port}/postgres"

    def run(self, program, *args):
        subprocess.run([*self.as_owner, str(self.bin / program), *args], check=True, capture_output=True,
                       cwd=self.folder, timeout=120)

    def start(self):
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "start",
                 "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self, mode="fast"):
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-w", "-m", mode, "stop")

    def execute(self, sql):
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(sql)
        finally:
            engine.dispose()


@pytest.fixture
def private_postgres():
    folder = Path(tempfile.mkdtemp(prefix="canary-pg-"))
    folder.chmod(0o755)
    cluster = PrivatePostgres(folder)
    cluster.start()
    yield cluster
    try:
        cluster.stop("immediate")
    except subprocess.CalledProcessError:
        pass  # already stopped
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_stopped_is_503_and_restarted_serves_the_next_request(production, private_postgres, device):
    server = production(private_postgres.url)
    path = f"/devices/{device}/readings/"
    for _ in range(4):  # open connections in both workers: kept and pooled ones
        assert call(server.port, "POST", path, READING)[0] == 201
        assert call(server.port, "GET", path)[0] == 200
    private_postgres.stop()
    for method, target, body in (("POST", path, READING), ("POST", path, [READING]), ("GET", path, None),
                                 ("GET", f"{path}mean/?type=temperature", None), ("GET", "/health", None)):
        for _ in range(2):
            assert_retry_later(*call(server.port, method, target, body))
    private_postgres.start()
    for attempt in range(4):  # every worker's first request after the restart succeeds
        assert call(server.port, "POST", path, {**READING, "date_created": attempt})[0] == 201
        assert call(server.port, "POST", path, [{**READING, "date_created": 10 + attempt}])[0] == 201
        assert call(server.port, "GET", "/health")[0] == 200
    status, listing, _ = call(server.port, "GET", path)
    assert status == 200 and len(listing) == 4 + 8
    assert "Traceback" not in server.log()


def test_postgres_disk_full_is_503_then_heals(production, private_postgres, small_disk, device):
    shutil.chown(small_disk, "postgres", "postgres")
    (small_disk / "space").mkdir()
    shutil.chown(small_disk / "space", "postgres", "postgres")
    private_postgres.execute(f"CREATE TABLESPACE small LOCATION '{small_disk / 'space'}'")
    private_postgres.execute("ALTER ROLE canary SET default_tablespace = small")
    server = production(private_postgres.url)
    assert_full_disk_refused_then_healed(server, small_disk, device)
