"""A test written the classic way works as written: `from app import app`, its test client, and rows put into
test_database.db with sqlite3, as after `source configure_testing.sh` in the repository root."""
import json
import sqlite3
import uuid

from app import app

LEGACY_TABLE = "CREATE TABLE IF NOT EXISTS readings (device_uuid TEXT, type TEXT, value INTEGER, date_created INTEGER)"


def test_module_app_reads_rows_put_into_test_database_db():
    device = f"classic-{uuid.uuid4().hex}"
    connection = sqlite3.connect("test_database.db")
    try:
        with connection:
            connection.execute(LEGACY_TABLE)
            connection.executemany("INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)",
                                   [(device, "temperature", 20, 1), (device, "temperature", 30, 2)])
        client = app.test_client()
        listed = client.get(f"/devices/{device}/readings/").get_json()
        assert [reading["value"] for reading in listed] == [20, 30]
        assert client.get(f"/devices/{device}/readings/mean/?type=temperature").get_json() == {"value": 25}
        posted = client.post(f"/devices/{device}/readings/", data=json.dumps({"type": "humidity", "value": 50}))
        assert posted.status_code == 201
        stored = connection.execute("SELECT value FROM readings WHERE device_uuid = ? AND type = 'humidity'",
                                    (device,)).fetchall()
        assert stored == [(50,)]
    finally:
        with connection:
            connection.execute("DELETE FROM readings WHERE device_uuid = ?", (device,))
        connection.close()
