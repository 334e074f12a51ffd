"""Bad input of every kind: the right status, the JSON error shape, and nothing stored."""
import json
from urllib.parse import quote

import pytest
from assertions import assert_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOOD = {"type": "temperature", "value": 5, "date_created": 100}
METRIC_PATHS = [f"/devices/dev-1/readings/{m}/" for m in ("min", "max", "median", "mean", "mode", "quartiles")]
READ_PATHS = ["/devices/dev-1/readings/"] + METRIC_PATHS


@pytest.mark.parametrize(
    "raw",
    ["{", '{"type": "temperature", "value": 5', "{'type': 'temperature', 'value': 5}", "type=temperature&value=5",
     "", "   ", '{"type": "temperature", "value": 05}', b"\xff\xfe{}", "[" * 10000, '{"a":' * 10000,
     b'{"type": "temper\xffature", "value": 5}'],
)
@pytest.mark.parametrize("path", ["/devices/dev-1/readings/", "/readings/"])
def test_malformed_json_post_is_400(client, stored_count, raw, path):
    assert_error(client.post(path, data=raw), 400)
    assert stored_count() == 0


@pytest.mark.parametrize("raw", ["{", "[" * 10000, "{'start': 1}", "nope", "\n", " \t\r\n"])
@pytest.mark.parametrize("path", READ_PATHS)
def test_malformed_json_filters_are_400(client, raw, path):
    assert_error(client.get(path, query_string={"type": "temperature"}, data=raw), 400)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "temperature", "value": "5"}, "value"),
        ({"type": "temperature", "value": 5.5}, "value"),
        ({"type": "temperature", "value": True}, "value"),
        ({"type": "temperature", "value": False}, "value"),
        ({"type": "temperature", "value": None}, "value"),
        ({"type": "temperature", "value": [5]}, "value"),
        ({"type": 1, "value": 5}, "type"),
        ({"type": None, "value": 5}, "type"),
        ({"type": "Temperature", "value": 5}, "type"),
        ({"type": "pressure", "value": 5}, "type"),
        ({"type": "temperature", "value": -1}, "value"),
        ({"type": "temperature", "value": 101}, "value"),
        ({"type": "temperature", "value": 10**30}, "value"),
        ({"type": "temperature", "value": 5, "date_created": -1}, "date_created"),
        ({"type": "temperature", "value": 5, "date_created": 2**64}, "date_created"),
        ({"type": "temperature", "value": 5, "date_created": "100"}, "date_created"),
        ({"type": "temperature", "value": 5, "date_created": 1.5}, "date_created"),
        ({"type": "temperature", "value": 5, "date_created": None}, "date_created"),
        ({"type": "temperature"}, "value"),
        ({"value": 5}, "type"),
        ({}, "type"),
        ({**GOOD, "unit": "C"}, "unit"),
        ({**GOOD, "device_uuid": "dev-1"}, "device_uuid"),
        ({**GOOD, "id": 1}, "id"),
    ],
)
def test_invalid_reading_is_422(client, stored_count, body, field):
    errors = assert_error(client.post("/devices/dev-1/readings/", data=json.dumps(body)), 422)["errors"]
    assert field in errors
    assert stored_count() == 0


@pytest.mark.parametrize("raw", ['"text"', "5", "null", "true", "[1, 2]", '[{"type": "temperature"}]', "[[]]"])
def test_non_object_reading_is_422(client, stored_count, raw):
    assert_error(client.post("/devices/dev-1/readings/", data=raw), 422)
    assert stored_count() == 0


@pytest.mark.parametrize("raw", ['"text"', "5", "null", "{}", json.dumps({**GOOD, "device_uuid": "d"}), "[1]"])
def test_bad_gateway_batch_is_422(client, stored_count, raw):
    assert_error(client.post("/readings/", data=raw), 422)
    assert stored_count() == 0


BAD_FILTERS = [
    ({"start": "abc"}, "start"),
    ({"end": "1.5"}, "end"),
    ({"start": "-1"}, "start"),
    ({"start": ""}, "start"),
    ({"start": "20", "end": "10"}, "start"),
    ({"end": str(2**64)}, "end"),
    ({"type": "foo"}, "type"),
    ({"type": "HUMIDITY"}, "type"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize("filters, field", BAD_FILTERS + [({"limit": "0"}, "limit"), ({"order": "up"}, "order"),
                                                           ({"limit": "-3"}, "limit"), ({"limit": "x"}, "limit")])
@pytest.mark.parametrize("how", ["query", "body"])
def test_bad_listing_filters_are_422(client, filters, field, how):
    if how == "query":
        response = client.get("/devices/dev-1/readings/", query_string=filters)
    else:
        response = client.get("/devices/dev-1/readings/", data=json.dumps(filters))
    assert field in assert_error(response, 422)["errors"]


@pytest.mark.parametrize("filters, field", BAD_FILTERS + [({"limit": "2"}, "limit")])
@pytest.mark.parametrize("path", METRIC_PATHS)
def test_bad_metric_filters_are_422(client, filters, field, path):
    client.post("/devices/dev-1/readings/", data=json.dumps(GOOD))
    response = client.get(path, query_string={"type": "temperature", **filters})
    assert field in assert_error(response, 422)["errors"]


@pytest.mark.parametrize("raw", ['"type=temperature"', "[1]", "5", "true", "null"])
@pytest.mark.parametrize("path", READ_PATHS)
def test_non_object_filter_body_is_422(client, raw, path):
    assert_error(client.get(path, query_string={"type": "temperature"}, data=raw), 422)


HOSTILE_DEVICES = ["x" * 65, "a b", " dev", "dévice", "设备", "\x00", "dev\x00", "%00", "'", '"quoted"', "<script>",
                   "a;DROP TABLE readings", "..%2F", "dev\n"]


@pytest.mark.parametrize("device", HOSTILE_DEVICES)
def test_hostile_device_id_is_422(client, stored_count, device):
    base = f"/devices/{quote(device, safe='')}/readings/"
    for response in (client.post(base, data=json.dumps(GOOD)), client.post(base, data=json.dumps([GOOD])),
                     client.get(base), client.get(base + "max/", query_string={"type": "temperature"})):
        assert "device_uuid" in assert_error(response, 422)["errors"]
    gateway = client.post("/readings/", data=json.dumps([{**GOOD, "device_uuid": device}]))
    assert "device_uuid" in assert_error(gateway, 422)["errors"]["0"]
    assert stored_count() == 0


@pytest.mark.parametrize(
    "method, path",
    [("delete", "/devices/dev-1/readings/"), ("put", "/devices/dev-1/readings/"),
     ("patch", "/devices/dev-1/readings/"), ("post", "/devices/dev-1/readings/max/"),
     ("delete", "/devices/dev-1/readings/max/"), ("get", "/readings/"), ("put", "/readings/"),
     ("post", "/health"), ("delete", "/health")],
)
def test_wrong_method_is_405(client, stored_count, method, path):
    response = getattr(client, method)(path, data=json.dumps(GOOD))
    assert_error(response, 405)
    assert "Allow" in response.headers
    assert stored_count() == 0


@pytest.mark.parametrize("path", ["/", "/nope", "/devices/dev-1", "/devices/dev-1/readings/min/extra/",
                                  "/devices//readings/", "/health/x"])
def test_unknown_route_is_404(client, path):
    assert_error(client.get(path), 404)


@pytest.mark.parametrize("batch", [False, True])
def test_body_over_max_content_length_is_413(client, stored_count, batch):
    padding = " " * (1024 * 1024)
    body = json.dumps([GOOD] if batch else GOOD) + padding
    assert_error(client.post("/devices/dev-1/readings/", data=body), 413)
    assert stored_count() == 0


@pytest.mark.parametrize("batch", [False, True])
def test_small_body_over_a_small_max_content_length_is_413(make_app, batch):
    client = make_app(MAX_CONTENT_LENGTH=64).test_client()  # a body this small is read whole before the app
    body = json.dumps([GOOD] if batch else GOOD) + " " * 64
    assert_error(client.post("/devices/dev-1/readings/", data=body), 413)
    assert client.post("/devices/dev-1/readings/", data=json.dumps(GOOD)).status_code == 201
    assert len(client.get("/devices/dev-1/readings/").get_json()) == 1


HOSTILE_BODIES = {
    "empty objects": "[" + "{}," * 900 + "{}]",
    "empty arrays": "[" + "[]," * 900 + "[]]",
    "deep arrays": "[" * 100000,
    "deep objects": '{"a":' * 100000,
    "one reading of many values": '{"type": "temperature", "value": [' + "0," * 900 + "0]}",
}


@pytest.mark.parametrize("raw", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
@pytest.mark.parametrize("path", ["/devices/dev-1/readings/", "/readings/", "/devices/dev-1/readings/mean/",
                                  "/devices/dev-1/readings/series/", "/devices/summary/"])
def test_body_of_too_many_json_values_is_413_before_parsing(make_app, raw, path):
    client = make_app(MAX_BATCH=100).test_client()  # at most 800 JSON values in a body
    send = client.get if path.endswith(("mean/", "series/", "summary/")) else client.post
    body = assert_error(send(path, query_string={"type": "temperature"}, data=raw), 413)
    assert "800 JSON values" in body["message"] and "100 readings" in body["message"]
    assert client.get("/devices/dev-1/readings/").get_json() == []


def test_full_gateway_body_of_empty_objects_is_413(client, stored_count):
    raw = "[" + "{}," * (8 * 1024 * 1024 // 3 - 1) + "{}]"
    assert_error(client.post("/readings/", data=raw), 413)
    assert stored_count() == 0


def test_gateway_body_over_its_limit_is_413(make_app):
    client = make_app(MAX_BATCH_CONTENT_LENGTH=4096).test_client()
    body = json.dumps([{**GOOD, "device_uuid": "dev-1"}]) + " " * 4096
    assert_error(client.post("/readings/", data=body), 413)
    assert client.get("/devices/dev-1/readings/").get_json() == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
reading_like = st.fixed_dictionaries({}, optional={"type": json_values | st.sampled_from(["temperature", "humidity"]),
                                                   "value": json_values, "date_created": json_values})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | reading_like)
def test_arbitrary_json_never_500_and_rejections_store_nothing(client, stored_count, body):
    before = stored_count()
    response = client.post("/devices/dev-1/readings/", data=json.dumps(body))
    assert response.status_code in (201, 422)
    if response.status_code == 422:
        assert_error(response, 422)
        assert stored_count() == before
    filters = client.get("/devices/dev-1/readings/", data=json.dumps(body))
    assert filters.status_code in (200, 422)
