"""The legacy harness: import the app, then rebuild test_database.db underneath it with raw sqlite3."""
import importlib
import json
import sqlite3
import statistics

import pytest

import app as app_module
from models import db

LEGACY_TABLE = "CREATE TABLE IF NOT EXISTS readings (device_uuid TEXT, type TEXT, value INTEGER, date_created INTEGER)"
ROWS = [
    ("test_device", "temperature", 22, 1000),
    ("test_device", "temperature", 22, 1000),
    ("test_device", "temperature", 50, 1001),
    ("test_device", "temperature", 100, 1002),
    ("test_device", "humidity", 40, 1000),
    ("test_device", "humidity", 40, 1000),
    ("other_device", "temperature", 7, 1000),
]


def rebuild(path, rows):
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DROP TABLE IF EXISTS readings")
        connection.execute(LEGACY_TABLE)
        connection.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
    connection.close()


def raw_rows(path):
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT device_uuid, type, value, date_created FROM readings").fetchall()
    finally:
        connection.close()


def columns(path):
    connection = sqlite3.connect(path)
    try:
        return [row[1] for row in connection.execute("PRAGMA table_info(readings)")]
    finally:
        connection.close()


def index_columns(path):
    connection = sqlite3.connect(path)
    try:
        names = [row[1] for row in connection.execute("PRAGMA index_list(readings)")]
        return [[row[2] for row in connection.execute(f'PRAGMA index_info("{name}")')] for name in names]
    finally:
        connection.close()


def as_dict(row):
    return dict(zip(("device_uuid", "type", "value", "date_created"), row))


@pytest.fixture
def legacy(monkeypatch, tmp_path):
    """The module-level app, imported under the testing settings in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESTING_SETTINGS", "1")
    monkeypatch.delenv("DEVELOPMENT_SETTINGS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    module = importlib.reload(app_module)
    yield module.app, tmp_path / "test_database.db"
    with module.app.app_context():
        db.engine.dispose()
    # Put the module-level app back as the suite imported it.
    monkeypatch.undo()
    importlib.reload(app_module)


def test_import_touches_no_database_and_the_first_request_makes_it_in_working_directory(legacy):
    application, path = legacy
    assert not path.exists()
    assert application.config["TESTING"] is True
    assert application.test_client().get("/health").status_code == 200
    assert path.exists() and columns(path) == ["id", "device_uuid", "type", "value", "date_created"]


def test_listing_counts_identical_rows(legacy):
    application, path = legacy
    rebuild(path, ROWS)
    client = application.test_client()
    listed = client.get("/devices/test_device/readings/").get_json()
    expected = sorted((as_dict(row) for row in ROWS if row[0] == "test_device"), key=lambda r: r["date_created"])
    assert listed == expected
    assert len(listed) == 6
    temperature = client.get("/devices/test_device/readings/", query_string={"type": "temperature"}).get_json()
    assert [r["value"] for r in temperature] == [22, 22, 50, 100]


def test_metrics_on_legacy_table(legacy):
    application, path = legacy
    rebuild(path, ROWS)
    client = application.test_client()
    values = [row[2] for row in ROWS if row[:2] == ("test_device", "temperature")]

    def metric(name, **filters):
        response = client.get(f"/devices/test_device/readings/{name}/", query_string={"type": "temperature", **filters})
        assert response.status_code == 200
        return response.get_json()

    assert metric("min") == as_dict(("test_device", "temperature", 22, 1000))
    assert metric("max") == as_dict(("test_device", "temperature", 100, 1002))
    assert metric("median") == {**as_dict(("test_device", "temperature", 22, 1000)), "value": 36}
    assert metric("mean") == {"value": statistics.mean(values)}
    assert metric("mode") == {"value": 22}
    assert metric("quartiles") == {"quartile_1": 22, "quartile_3": 75}
    assert metric("quartiles", start=1001) == {"quartile_1": 50, "quartile_3": 100}
    humidity = client.get("/devices/test_device/readings/mode/", data=json.dumps({"type": "humidity"}))
    assert humidity.get_json() == {"value": 40}


def test_post_writes_into_four_column_table(legacy):
    application, path = legacy
    rebuild(path, ROWS)
    client = application.test_client()
    single = {"type": "humidity", "value": 55, "date_created": 2000}
    assert client.post("/devices/test_device/readings/", data=json.dumps(single)).status_code == 201
    assert client.post("/devices/test_device/readings/", data=json.dumps([single, single])).status_code == 201
    gateway = [{**single, "device_uuid": "gateway_device"}]
    assert client.post("/readings/", data=json.dumps(gateway)).status_code == 201
    assert columns(path) == ["device_uuid", "type", "value", "date_created"]
    assert sorted(raw_rows(path)) == sorted(ROWS + [("test_device", "humidity", 55, 2000)] * 3
                                            + [("gateway_device", "humidity", 55, 2000)])
    assert len(client.get("/devices/test_device/readings/").get_json()) == 9


def test_table_replaced_again_under_running_app(legacy):
    application, path = legacy
    rebuild(path, ROWS)
    client = application.test_client()
    temperature = {"type": "temperature"}
    assert len(client.get("/devices/test_device/readings/").get_json()) == 6
    assert client.get("/devices/test_device/readings/max/", query_string=temperature).get_json()["value"] == 100
    replacement = [("test_device", "temperature", 3, 5)] * 3 + [("test_device", "temperature", 9, 6)]
    rebuild(path, replacement)
    assert client.get("/devices/test_device/readings/").get_json() == [as_dict(row) for row in replacement]
    max_reading = client.get("/devices/test_device/readings/max/", query_string=temperature).get_json()
    assert max_reading == as_dict(replacement[-1])
    assert client.get("/devices/test_device/readings/mean/", query_string=temperature).get_json() == {"value": 4.5}
    posted = client.post("/devices/test_device/readings/", data=json.dumps({"type": "humidity", "value": 1}))
    assert posted.status_code == 201
    assert len(raw_rows(path)) == 5


def test_database_file_recreated_under_running_app(legacy):
    application, path = legacy
    client = application.test_client()
    posted = client.post("/devices/test_device/readings/", data=json.dumps({"type": "humidity", "value": 1}))
    assert posted.status_code == 201
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    rebuild(path, ROWS)
    listed = client.get("/devices/test_device/readings/").get_json()
    assert len(listed) == 6
    posted = client.post("/devices/test_device/readings/", data=json.dumps({"type": "humidity", "value": 2}))
    assert posted.status_code == 201
    assert len(raw_rows(path)) == len(ROWS) + 1


def test_app_started_on_existing_legacy_table(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DEVELOPMENT_SETTINGS", raising=False)
    monkeypatch.setenv("TESTING_SETTINGS", "1")
    rebuild(tmp_path / "test_database.db", ROWS)
    application = app_module.create_app()
    try:
        client = application.test_client()
        assert len(client.get("/devices/test_device/readings/").get_json()) == 6
        posted = client.post("/devices/test_device/readings/", data=json.dumps({"type": "humidity", "value": 2}))
        assert posted.status_code == 201
        assert columns(tmp_path / "test_database.db") == ["device_uuid", "type", "value", "date_created"]
        # Start-up adds the indexes the metrics and listings rely on to a table it did not create.
        assert any(index[0] == "device_uuid" for index in index_columns(tmp_path / "test_database.db"))
        assert len(raw_rows(tmp_path / "test_database.db")) == len(ROWS) + 1
    finally:
        with application.app_context():
            db.engine.dispose()
