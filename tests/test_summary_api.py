"""GET /devices/summary/ end to end, against a brute-force oracle."""
import json
from pathlib import Path

import oracles
import pytest
import sqlalchemy as sa
from assertions import assert_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metrics_api import assert_same

from canary.access.rules import DEVICE_READ, FLEET_READ
from canary.database import write_transaction
from canary.statistics import fleet, rollups
from models import SensorData, db

SUMMARY = "/devices/summary/"
# Mixed case, digits and punctuation: the order must be by code point on both backends.
DEVICES = ["a", "B", "b", "Z9", "_x", "-y", "dev.1", "dev:2", "summary", "0", "aa", "A"]

api_settings = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def post_readings(client, readings):
    """Store (device_uuid, type, value, date_created) readings through the gateway route."""
    batch = [{"device_uuid": device, "type": kind, "value": value, "date_created": date}
             for device, kind, value, date in readings]
    assert client.post("/readings/", data=json.dumps(batch)).status_code == 201


def clear(app):
    with app.app_context(), write_transaction(db.engine) as connection:
        connection.execute(sa.delete(SensorData.__table__))


def assert_rows(actual, expected):
    assert [row["device_uuid"] for row in actual] == [row["device_uuid"] for row in expected]
    for got, want in zip(actual, expected):
        assert_same(got, want)


readings_lists = st.lists(
    st.tuples(st.sampled_from(DEVICES), st.sampled_from(["temperature", "humidity"]), st.integers(0, 100),
              st.integers(0, 20)),
    max_size=60,
)


@api_settings
@given(
    readings=readings_lists,
    kind=st.sampled_from(["temperature", "humidity"]),
    bounds=st.tuples(st.integers(0, 20), st.integers(0, 20)).map(sorted),
    drop=st.sampled_from(["none", "start", "end", "both"]),
    limit=st.one_of(st.none(), st.integers(1, 14)),
    how=st.sampled_from(["query", "body"]),
)
def test_summary_matches_oracle(app, client, readings, kind, bounds, drop, limit, how):
    clear(app)
    if readings:
        post_readings(client, readings)
    filters = {"type": kind, "start": bounds[0], "end": bounds[1]}
    for key in {"none": [], "start": ["start"], "end": ["end"], "both": ["start", "end"]}[drop]:
        del filters[key]
    if limit is not None:
        filters["limit"] = limit
    if how == "query":
        response = client.get(SUMMARY, query_string=filters)
    else:
        response = client.get(SUMMARY, data=json.dumps(filters))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert_rows(response.get_json(), oracles.summary(readings, kind, filters.get("start"), filters.get("end"), limit))


def test_summary_orders_by_count_then_device(client):
    readings = [("b", "temperature", 1, 1), ("b", "temperature", 2, 2), ("a", "temperature", 3, 3),
                ("c", "temperature", 4, 4), ("c", "temperature", 5, 5), ("c", "temperature", 6, 6),
                ("B", "temperature", 7, 7), ("B", "temperature", 8, 8), ("d", "humidity", 9, 9)]
    post_readings(client, readings)
    rows = client.get(SUMMARY, query_string={"type": "temperature"}).get_json()
    assert [(row["device_uuid"], row["number_of_readings"]) for row in rows] == [("c", 3), ("B", 2), ("b", 2),
                                                                                ("a", 1)]
    assert rows[0] == {"device_uuid": "c", "number_of_readings": 3, "max_reading_value": 6,
                       "median_reading_value": 5, "mean_reading_value": 5, "quartile_1_value": 4.5,
                       "quartile_3_value": 5.5}
    limited = client.get(SUMMARY, query_string={"type": "temperature", "limit": 2}).get_json()
    assert limited == rows[:2]


@pytest.mark.parametrize("served", ["rollups", "raw"])
@pytest.mark.parametrize("offset, limit", [(2**63 - 1, 28_848), (2**63 - 1, None), (3, 2**63 - 1)])
def test_summary_pages_past_the_end_to_an_empty_page(client, monkeypatch, served, offset, limit):
    post_readings(client, [("a", "temperature", 1, 1), ("b", "temperature", 2, 2), ("b", "temperature", 3, 3)])
    if served == "raw":
        monkeypatch.setattr(rollups, "fleet_serving", lambda *args: False)
    else:
        monkeypatch.setattr(fleet, "DENSE", 0)  # the rollups answer, however few readings a row holds
    query = {"type": "temperature", "offset": offset, **({} if limit is None else {"limit": limit})}
    answer = client.get(SUMMARY, query_string=query)
    assert answer.status_code == 200 and answer.get_json() == []


def test_summary_streams_many_devices_in_order(client):
    readings = [(f"dev-{index:04d}", "temperature", index % 101, index % 7) for index in range(1200)]
    readings += [(f"dev-{index:04d}", "temperature", 50, 1) for index in range(0, 1200, 3)]
    post_readings(client, readings)
    response = client.get(SUMMARY, query_string={"type": "temperature"}, buffered=False)
    assert response.is_streamed
    assert_rows(response.get_json(), oracles.summary(readings, "temperature"))


@pytest.mark.parametrize("filters", [{"type": "humidity"}, {"type": "temperature", "start": 50},
                                     {"type": "temperature", "end": 5}])
def test_summary_without_matching_readings_is_empty(client, filters):
    post_readings(client, [("a", "temperature", 1, 10)])
    response = client.get(SUMMARY, query_string=filters)
    assert response.status_code == 200 and response.get_json() == []


# Tables made by other tools may sort text case-insensitively or by language; the order must not.
CASE_BLIND_TABLES = {
    "sqlite": "CREATE TABLE readings (device_uuid TEXT COLLATE NOCASE, type TEXT, value INTEGER, date_created INTEGER)",
    "postgresql": 'CREATE TABLE readings (device_uuid TEXT COLLATE "und-x-icu", type TEXT, value INTEGER, '
                  "date_created BIGINT)",
}


def test_summary_orders_devices_by_code_point_whatever_the_table_collation(make_app, database_uri):
    engine = sa.create_engine(database_uri)
    if engine.dialect.name == "sqlite":
        Path(engine.url.database).unlink()  # the table comes first, as another tool would make it
    with engine.begin() as connection:
        connection.execute(sa.text(CASE_BLIND_TABLES[engine.dialect.name]))
    engine.dispose()
    client = make_app().test_client()
    devices = ["B", "a", "Z9", "_x", "-y", "0", "dev.1", "dev:2"]  # no two differ only in case
    post_readings(client, [(device, "temperature", 5, 1) for device in devices])
    rows = client.get(SUMMARY, query_string={"type": "temperature"}).get_json()
    assert [row["device_uuid"] for row in rows] == sorted(devices)


def test_summary_query_string_wins_over_body(client):
    post_readings(client, [("a", "temperature", 10, 1), ("b", "humidity", 80, 1), ("b", "humidity", 81, 2)])
    response = client.get(SUMMARY, query_string={"type": "humidity", "limit": "1"},
                          data=json.dumps({"type": "temperature", "limit": 5}))
    assert [(row["device_uuid"], row["max_reading_value"]) for row in response.get_json()] == [("b", 81)]


def test_summary_route_with_and_without_slash_and_a_device_named_summary(client):
    post_readings(client, [("summary", "temperature", 10, 1), ("summary", "temperature", 30, 2)])
    for path in ("/devices/summary/", "/devices/summary"):
        assert client.get(path, query_string={"type": "temperature"}).get_json()[0]["device_uuid"] == "summary"
    assert len(client.get("/devices/summary/readings/").get_json()) == 2
    assert client.get("/devices/summary/readings/mean/?type=temperature").get_json() == {"value": 20}
    posted = client.post("/devices/summary/readings/", data=json.dumps({"type": "humidity", "value": 5}))
    assert posted.status_code == 201


BAD_SUMMARY_FILTERS = [
    ({"type": None}, "type"), ({"type": "pressure"}, "type"), ({"type": "Temperature"}, "type"),
    ({"limit": "0"}, "limit"), ({"limit": "-1"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "1.5"}, "limit"),
    ({"start": "20", "end": "10"}, "start"), ({"start": "abc"}, "start"), ({"end": str(2**64)}, "end"),
    ({"colour": "red"}, "colour"), ({"interval": "1h"}, "interval"), ({"order": "down"}, "order"),
    ({"order": "DESC"}, "order"), ({"sort": "count"}, "sort"), ({"sort": "min_reading_value"}, "sort"),
    ({"offset": "-1"}, "offset"), ({"offset": "x"}, "offset"),
]


@pytest.mark.parametrize("filters, field", BAD_SUMMARY_FILTERS)
@pytest.mark.parametrize("how", ["query", "body"])
def test_bad_summary_filters_are_422(client, filters, field, how):
    filters = {key: value for key, value in {"type": "temperature", **filters}.items() if value is not None}
    if how == "query":
        response = client.get(SUMMARY, query_string=filters)
    else:
        response = client.get(SUMMARY, data=json.dumps(filters))
    assert field in assert_error(response, 422)["errors"]


@pytest.mark.parametrize("raw, code", [("{", 400), ("[1]", 422), ("5", 422)])
def test_malformed_summary_body(client, raw, code):
    assert_error(client.get(SUMMARY, query_string={"type": "temperature"}, data=raw), code)


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_summary_wrong_method_is_405(client, stored_count, method):
    response = getattr(client, method)(SUMMARY, data=json.dumps({"type": "temperature", "value": 1}))
    assert_error(response, 405)
    assert stored_count() == 0


def test_role_ingest_refuses_series_and_summary(make_app, monkeypatch, device):
    monkeypatch.setenv("CANARY_ROLE", "ingest")
    ingest = make_app().test_client()
    assert ingest.post(f"/devices/{device}/readings/", data=json.dumps({"type": "temperature", "value": 1,
                                                                       "date_created": 5})).status_code == 201
    for path, query in [(f"/devices/{device}/readings/series/", {"type": "temperature", "interval": 60}),
                        (SUMMARY, {"type": "temperature"})]:
        assert_error(ingest.get(path, query_string=query), 404)
    monkeypatch.setenv("CANARY_ROLE", "query")
    reader = make_app().test_client()
    assert reader.get(SUMMARY, query_string={"type": "temperature"}).get_json()[0]["device_uuid"] == device
    series = reader.get(f"/devices/{device}/readings/series/", query_string={"type": "temperature", "interval": 60})
    assert series.get_json()["buckets"][0]["count"] == 1


def test_views_are_marked_with_their_access_rule(app):
    rules = {endpoint: getattr(view, "access_rule", None) for endpoint, view in app.view_functions.items()}
    assert rules["statistics.get_series"] == DEVICE_READ
    assert rules["statistics.get_summary"] == FLEET_READ
