"""Posting and listing readings: single, batch and gateway ingest, filters, ordering and paging."""
import json
import os
import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from app import create_app
from models import db

READINGS = [
    {"type": "temperature", "value": 20, "date_created": 30},
    {"type": "humidity", "value": 60, "date_created": 10},
    {"type": "temperature", "value": 22, "date_created": 0},
    {"type": "humidity", "value": 61, "date_created": 20},
    {"type": "temperature", "value": 25, "date_created": 20},
]


def url(device):
    return f"/devices/{device}/readings/"


def post(client, device, body, **kwargs):
    return client.post(url(device), data=json.dumps(body), **kwargs)


def full(device, reading):
    return {"device_uuid": device, **reading}


def by_date(device, readings):
    return sorted((full(device, reading) for reading in readings), key=lambda r: r["date_created"])


@pytest.fixture
def stocked(client, device):
    """A device holding READINGS, posted one at a time in list order."""
    for reading in READINGS:
        assert post(client, device, reading).status_code == 201
    return device


def test_post_reading_returns_stored_reading(client, device):
    response = post(client, device, {"type": "temperature", "value": 42, "date_created": 1700000000})
    assert response.status_code == 201
    expected = {"device_uuid": device, "type": "temperature", "value": 42, "date_created": 1700000000}
    assert response.get_json() == expected
    assert client.get(url(device)).get_json() == [expected]


@pytest.mark.parametrize("value", [0, 100])
def test_post_reading_accepts_bounds(client, device, value):
    response = post(client, device, {"type": "humidity", "value": value, "date_created": 0})
    assert response.status_code == 201
    assert response.get_json()["value"] == value


def test_post_reading_without_date_uses_server_clock(client, device):
    before = int(time.time())
    response = post(client, device, {"type": "humidity", "value": 7})
    after = int(time.time())
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"date_created", "device_uuid", "type", "value"}
    assert before <= body["date_created"] <= after
    assert client.get(url(device)).get_json() == [body]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "application/x-www-form-urlencoded"}, {"Content-Type": "text/plain"},
     {"Content-Type": "application/json"}],
)
def test_post_reading_ignores_content_type(client, device, headers):
    response = post(client, device, {"type": "temperature", "value": 5, "date_created": 9}, headers=headers)
    assert response.status_code == 201
    assert client.get(url(device)).get_json() == [full(device, {"type": "temperature", "value": 5, "date_created": 9})]


def test_post_accepts_canonical_uuid_and_legacy_ids(client):
    for device in (str(uuid.uuid4()), "test_device", "a", "x" * 64, "gw-1.room:2"):
        assert post(client, device, {"type": "temperature", "value": 1, "date_created": 1}).status_code == 201
        assert len(client.get(url(device)).get_json()) == 1


def test_list_orders_by_date_with_ties_in_insertion_order(client, stocked):
    listed = client.get(url(stocked)).get_json()
    assert listed == by_date(stocked, READINGS)
    # The two readings at date 20 must keep the order in which they were posted.
    assert [r["value"] for r in listed if r["date_created"] == 20] == [61, 25]


def test_list_unknown_device_is_empty(client, stocked):
    response = client.get(url("never-seen"))
    assert response.status_code == 200
    assert response.get_json() == []


@pytest.mark.parametrize(
    "filters, expected_dates",
    [
        ({"type": "temperature"}, [0, 20, 30]),
        ({"type": "humidity"}, [10, 20]),
        ({"start": 10}, [10, 20, 20, 30]),
        ({"end": 20}, [0, 10, 20, 20]),
        ({"start": 20, "end": 20}, [20, 20]),
        ({"start": 0, "end": 0}, [0]),
        ({"end": 0}, [0]),
        ({"start": 0}, [0, 10, 20, 20, 30]),
        ({"start": 11, "end": 19}, []),
        ({"type": "temperature", "start": 1, "end": 25}, [20]),
    ],
)
@pytest.mark.parametrize("how", ["query", "body"])
def test_list_filters(client, stocked, filters, expected_dates, how):
    if how == "query":
        response = client.get(url(stocked), query_string=filters)
    else:
        response = client.get(url(stocked), data=json.dumps(filters))
    assert response.status_code == 200
    listed = response.get_json()
    assert [r["date_created"] for r in listed] == expected_dates
    assert all(r["type"] == filters.get("type", r["type"]) for r in listed)


def test_list_query_string_wins_over_body_per_key(client, stocked):
    response = client.get(
        url(stocked), query_string={"type": "temperature"}, data=json.dumps({"type": "humidity", "start": 5})
    )
    assert response.status_code == 200
    assert [(r["type"], r["date_created"]) for r in response.get_json()] == [("temperature", 20), ("temperature", 30)]


def test_list_desc_reverses_order_including_ties(client, stocked):
    response = client.get(url(stocked), query_string={"order": "desc"})
    assert response.status_code == 200
    assert response.get_json() == list(reversed(by_date(stocked, READINGS)))


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"limit": 2}, [0, 10]),
        ({"limit": 2, "order": "desc"}, [30, 20]),
        ({"limit": 1, "order": "asc", "type": "humidity"}, [10]),
        ({"limit": 100}, [0, 10, 20, 20, 30]),
    ],
)
def test_list_limit_and_order(client, stocked, params, expected):
    response = client.get(url(stocked), query_string=params)
    assert response.status_code == 200
    assert [r["date_created"] for r in response.get_json()] == expected


def test_trailing_slash_is_optional(client, device):
    reading = {"type": "temperature", "value": 3, "date_created": 4}
    assert client.post(f"/devices/{device}/readings", data=json.dumps(reading)).status_code == 201
    assert client.get(f"/devices/{device}/readings").get_json() == [full(device, reading)]
    response = client.get(f"/devices/{device}/readings/max", query_string={"type": "temperature"})
    assert response.status_code == 200
    assert response.get_json() == full(device, reading)


def test_batch_post_stores_every_reading(client, device):
    response = post(client, device, READINGS)
    assert response.status_code == 201
    assert response.get_json() == {"count": len(READINGS)}
    assert client.get(url(device)).get_json() == by_date(device, READINGS)


def test_batch_post_with_one_bad_item_stores_nothing(client, device, stored_count):
    batch = [READINGS[0], {"type": "temperature", "value": 101}, READINGS[1], {"type": "x", "value": 1}]
    response = post(client, device, batch)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"1", "3"}
    assert "value" in errors["1"] and "type" in errors["3"]
    assert stored_count() == 0


def test_gateway_batch_stores_each_reading_under_its_device(client):
    devices = ["gw-a-" + uuid.uuid4().hex, "gw-b-" + uuid.uuid4().hex]
    batch = [full(devices[i % 2], reading) for i, reading in enumerate(READINGS)]
    for path in ("/readings/", "/readings"):
        response = client.post(path, data=json.dumps(batch))
        assert response.status_code == 201
        assert response.get_json() == {"count": len(READINGS)}
    for index, device in enumerate(devices):
        mine = [reading for i, reading in enumerate(READINGS) if i % 2 == index]
        doubled = sorted(by_date(device, mine) * 2, key=lambda r: r["date_created"])
        assert client.get(url(device)).get_json() == doubled


def test_gateway_batch_with_one_bad_item_stores_nothing(client, stored_count):
    batch = [full("ok-device", READINGS[0]), {"type": "humidity", "value": 5}, full("bad device", READINGS[1])]
    response = client.post("/readings/", data=json.dumps(batch))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"1", "2"}
    assert "device_uuid" in errors["1"] and "device_uuid" in errors["2"]
    assert stored_count() == 0


@pytest.mark.parametrize("gateway", [False, True])
def test_batch_over_max_batch_is_413(make_app, device, gateway):
    client = make_app(MAX_BATCH=3).test_client()
    batch = [full(device, READINGS[0])] * 4 if gateway else [READINGS[0]] * 4
    response = client.post("/readings/" if gateway else url(device), data=json.dumps(batch))
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    assert client.get(url(device)).get_json() == []
    response = client.post("/readings/" if gateway else url(device), data=json.dumps(batch[:3]))
    assert response.status_code == 201
    assert response.get_json() == {"count": 3}


@pytest.mark.parametrize("gateway", [False, True])
def test_full_default_batch_fits_in_body_limit(client, stored_count, gateway):
    reading = {"type": "temperature", "value": 100, "date_created": 1700000000}
    if gateway:
        reading["device_uuid"] = "d" * 64
    batch = [reading] * client.application.config["MAX_BATCH"]
    response = client.post("/readings/" if gateway else url("d" * 64), data=json.dumps(batch))
    assert response.status_code == 201
    assert response.get_json() == {"count": 10_000}
    assert stored_count() == 10_000


def test_health_is_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_list_merges_types_in_arrival_order_within_a_second(client, device):
    posted = [
        {"type": "temperature", "value": 1, "date_created": 5},
        {"type": "humidity", "value": 2, "date_created": 5},
        {"type": "temperature", "value": 3, "date_created": 5},
        {"type": "humidity", "value": 4, "date_created": 4},
        {"type": "temperature", "value": 5, "date_created": 6},
    ]
    for reading in posted:
        assert post(client, device, reading).status_code == 201
    assert [r["value"] for r in client.get(url(device)).get_json()] == [4, 1, 2, 3, 5]
    newest = client.get(url(device), query_string={"order": "desc", "limit": 3}).get_json()
    assert [r["value"] for r in newest] == [5, 3, 2]
    window = client.get(url(device), query_string={"start": 5, "end": 5, "limit": 2}).get_json()
    assert [r["value"] for r in window] == [1, 2]


def test_post_after_engine_dispose_is_stored(app, client, device, stored_count):
    assert post(client, device, READINGS[0]).status_code == 201
    with app.app_context():
        db.engine.dispose()
    assert post(client, device, READINGS[1]).status_code == 201
    assert stored_count() == 2


@pytest.mark.parametrize("batch", [False, True])
def test_post_when_table_is_lost_is_503_then_table_is_recreated(app, client, device, stored_count, batch):
    assert post(client, device, READINGS[0]).status_code == 201
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE readings"))
    failed = post(client, device, [READINGS[1]] if batch else READINGS[1])
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1"
    assert failed.get_json()["code"] == 503 and failed.get_json()["message"]
    assert post(client, device, READINGS[2]).status_code == 201  # this request created the schema again
    assert stored_count() == 1  # the refused reading was not stored
    assert client.get(url(device)).get_json() == by_date(device, [READINGS[2]])


def test_in_memory_database_stores_and_lists(device):
    application = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "AUTH": "open"})
    client = application.test_client()
    for reading in READINGS[:2]:
        assert post(client, device, reading).status_code == 201
    assert client.get(url(device)).get_json() == by_date(device, READINGS[:2])


def test_writes_from_short_lived_threads_leave_no_open_files(client, device, stored_count):
    # Development servers start a thread per request; its connection and lock file go with it.
    def write(index):
        assert post(client, device, {"type": "humidity", "value": index}).status_code == 201
        assert post(client, device, [{"type": "humidity", "value": index}]).status_code == 201

    def run_threads(count):
        for index in range(count):
            thread = threading.Thread(target=write, args=(index,))
            thread.start()
            thread.join()

    run_threads(3)  # opens whatever the process keeps, such as the pool's own connection
    before = len(os.listdir("/proc/self/fd"))
    run_threads(30)
    assert len(os.listdir("/proc/self/fd")) <= before
    assert stored_count() == 66


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("filters", [{}, {"type": "temperature"}, {"limit": 37}, {"start": 3, "end": 20, "limit": 45}])
def test_list_reads_in_keyset_pages_without_gaps_or_repeats(make_app, device, order, filters):
    client = make_app(STREAM_CHUNK_ROWS=3).test_client()  # pages of 30 rows
    # Many readings share each second, so pages often end inside a run of equal dates.
    posted = [{"type": ("temperature", "humidity")[n % 3 == 0], "value": n % 101, "date_created": n // 7}
              for n in range(160)]
    assert post(client, device, posted[:80]).status_code == 201
    for reading in posted[80:]:
        assert post(client, device, reading).status_code == 201
    matching = [(n, r) for n, r in enumerate(posted)
                if r["type"] == filters.get("type", r["type"])
                and filters.get("start", 0) <= r["date_created"] <= filters.get("end", 10**9)]
    matching.sort(key=lambda pair: (pair[1]["date_created"], pair[0]), reverse=order == "desc")
    expected = [full(device, reading) for _, reading in matching][:filters.get("limit")]
    assert client.get(url(device), query_string={**filters, "order": order}).get_json() == expected


def test_slow_listing_holds_no_snapshot_between_pages(tmp_path, device):
    path = tmp_path / "slow.db"
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "AUTH": "open", "STREAM_CHUNK_ROWS": 10})
    client = application.test_client()
    readings = [{"type": "temperature", "value": n % 101, "date_created": n} for n in range(1000)]
    assert post(client, device, readings).status_code == 201
    response = client.get(url(device), buffered=False)
    chunks = iter(response.response)
    received = [next(chunks) for _ in range(15)]  # past the first page of 100 rows
    writer = sqlite3.connect(path)
    try:
        writer.execute("INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)",
                       (device, "temperature", 1, 5000))
        writer.commit()
        busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        writer.close()
    assert busy == 0  # no reader's snapshot kept the checkpoint from finishing
    body = b"".join(received) + b"".join(chunks)
    response.close()
    listed = json.loads(body)
    assert [r["date_created"] for r in listed[:1000]] == list(range(1000))
    with application.app_context():
        db.engine.dispose()


def wsgi_call(app, method, path, body=None):
    """Call the app as a WSGI server would; return the status line and the response iterable."""
    from werkzeug.test import EnvironBuilder

    statuses = []
    environ = EnvironBuilder(method=method, path=path, data=body, content_type="application/json").get_environ()
    return statuses, app(environ, lambda status, headers, exc_info=None: statuses.append((status, dict(headers))))


def test_whole_response_reaches_the_server_as_one_bytes_object(app, device):
    statuses, body = wsgi_call(app, "POST", url(device), json.dumps(READINGS[0]))
    [(status, headers)] = statuses
    assert (status, headers["Content-Type"]) == ("201 CREATED", "application/json")
    assert int(headers["Content-Length"]) == len(body[0])
    assert isinstance(body, list) and len(body) == 1
    assert json.loads(body[0]) == full(device, READINGS[0])


def test_listing_response_stays_streamed(app, client, device):
    assert post(client, device, READINGS).status_code == 201
    statuses, body = wsgi_call(app, "GET", url(device))
    assert [status for status, _ in statuses] == ["200 OK"] and not isinstance(body, list)
    try:
        assert json.loads(b"".join(body)) == by_date(device, READINGS)
    finally:
        body.close()
