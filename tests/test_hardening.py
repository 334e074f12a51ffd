"""What an outside probe tried: hostile bodies, echoes, redirects, headers and loose inputs, answered plainly."""
import io
import json

import pytest

from canary.ingest.loading import LISTED_INVALID_READINGS
from canary.web.guards import CountedInput, RequestGuards
from canary.web.requests import NOT_JSON, TOO_DEEP

GOOD = {"type": "temperature", "value": 5, "date_created": 100}
MAX_EPOCH = 2**63 - 1
ERROR_BODY_LIMIT = 64 * 1024


def post(client, path, body):
    return client.post(path, data=body if isinstance(body, (bytes, str)) else json.dumps(body))


PYTHON_WORDS = ("recursion", "sys.", "codec", "position", "line 1", "Expecting", "int_max_str_digits", "char ")
NOT_JSON_BODIES = {
    "1,000 open brackets": "[" * 1000,
    "1,000 nested arrays, closed": "[" * 1000 + "]" * 1000,
    "invalid utf-8": b'{"type": "temper\xffature", "value": 5}',
    "a lone 0xff": b"\xff",
    "truncated object": '{"type": "temperature", ',
    "single quotes": "{'type': 'temperature'}",
}


@pytest.mark.parametrize("body", NOT_JSON_BODIES.values(), ids=NOT_JSON_BODIES)
@pytest.mark.parametrize("path", ["/devices/dev-1/readings/", "/readings/"])
def test_body_that_is_not_json_gets_one_plain_message(client, stored_count, body, path):
    response = post(client, path, body)
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert message in (NOT_JSON.format(what="a JSON object or array"), TOO_DEEP.format(what="a JSON object or array"))
    assert not any(word in message for word in PYTHON_WORDS), message
    assert stored_count() == 0


@pytest.mark.parametrize("field", ["value", "date_created"])
@pytest.mark.parametrize("sign", ["", "-"])
def test_integer_of_4301_digits_is_out_of_range_not_a_parser_error(client, stored_count, field, sign):
    body = json.dumps(GOOD).replace(f'"{field}": {GOOD[field]}', f'"{field}": {sign}{"9" * 4301}')
    response = post(client, "/devices/dev-1/readings/", body)
    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["errors"]) == [field]
    assert "digits" not in response.get_data(as_text=True)
    assert stored_count() == 0


def test_filter_body_that_is_not_json_says_what_a_filter_body_is(client):
    response = client.get("/devices/dev-1/readings/", data="[" * 1000)
    assert response.status_code == 400
    assert response.get_json()["message"] == TOO_DEEP.format(what="a JSON object of filters, or no body")


@pytest.mark.parametrize("path, item", [("/readings/", lambda n: {"k" * 700: n}),
                                        ("/devices/dev-1/readings/", lambda n: {"k" * 80: n}),
                                        ("/readings/", lambda n: {**GOOD, "device_uuid": f"d-{n}", "value": 101}),
                                        ("/readings/", lambda n: {f"key{k}" * 40: 0 for k in range(3)})])
def test_batch_of_10000_bad_readings_gets_a_bounded_error(client, stored_count, path, item):
    body = json.dumps([item(n) for n in range(10_000)])
    response = post(client, path, body)
    assert response.status_code == 422
    error = response.get_json()
    assert len(response.get_data()) < ERROR_BODY_LIMIT
    listed = [key for key in error["errors"] if key != "_schema"]
    assert sorted(map(int, listed)) == list(range(LISTED_INVALID_READINGS))
    assert "10,000 of the 10,000 readings are invalid" in error["message"]
    assert stored_count() == 0


def test_batch_with_few_bad_readings_lists_each_of_them(client, stored_count):
    batch = [{**GOOD, "device_uuid": "d"} for _ in range(500)]
    for index in (3, 250, 499):
        batch[index]["value"] = -1
    error = post(client, "/readings/", batch).get_json()
    assert set(error["errors"]) == {"3", "250", "499"}
    assert error["errors"]["250"] == {"value": ["Must be greater than or equal to 0 and less than or equal to 100."]}
    assert error["message"].startswith("3 of the 500 readings are invalid")
    assert stored_count() == 0


def test_reading_with_many_long_unknown_keys_gets_a_bounded_error(client):
    reading = {**GOOD, **{f"{n}-" + "u" * 1000: n for n in range(500)}}
    response = post(client, "/devices/dev-1/readings/", reading)
    assert response.status_code == 422 and len(response.get_data()) < ERROR_BODY_LIMIT
    errors = response.get_json()["errors"]
    assert len(errors) == 101 and "more not listed" in errors["_schema"][0]
    assert all(len(key) <= 67 for key in errors)


@pytest.mark.parametrize("path", ["/devices//dev-1/readings/", "//devices/dev-1/readings/",
                                  "/devices/dev-1//readings//", "///health"])
def test_doubled_slashes_are_routed_not_redirected(client, path):
    client.post("/devices/dev-1/readings/", data=json.dumps(GOOD))
    # As a server hands on the request target: the test client would read "//devices" as a host.
    response = client.get("/", headers={"Host": "evil.example"}, environ_overrides={"PATH_INFO": path})
    assert response.status_code == 200 and "Location" not in response.headers
    assert "evil.example" not in response.get_data(as_text=True)


def test_doubled_slashes_still_need_a_token(make_app):
    client = make_app(AUTH="tokens").test_client()
    response = client.get("/", headers={"Host": "evil.example"},
                          environ_overrides={"PATH_INFO": "/devices//dev-1/readings/"})
    assert response.status_code == 401 and "Location" not in response.headers


def test_no_route_answers_a_redirect(app, client):
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<device_uuid>", "dev-1").replace("<metric>", "max")
        path = path.replace("<any(", "").split("):filename>")[0].split(",")[0].strip("'")
        for variant in {path, path.rstrip("/"), path.rstrip("/") + "/", "/" + path, path.replace("/", "//")}:
            status = client.get("/", headers={"Host": "evil.example"},
                                environ_overrides={"PATH_INFO": variant}).status_code
            assert not 300 <= status < 400, (variant, status)


@pytest.mark.parametrize("path", ["/health", "/devices/dev-1/readings/", "/devices/dev-1/readings/nope/",
                                  "/devices/dev-1/readings/max/?type=temperature", "/nope", "/openapi.json",
                                  "/docs", "/docs/assets/swagger-ui.css", "/dashboard/", "/dashboard/static/fleet.js"])
def test_every_response_forbids_type_sniffing(client, path):
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


def test_error_raised_before_routing_forbids_type_sniffing(client):
    response = client.delete("/health")
    assert response.status_code == 405 and response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "posix/Europe/London", "right/UTC", "../UTC"])
def test_time_zone_that_is_not_an_iana_name_is_422(client, zone):
    response = client.get("/devices/dev-1/readings/series/",
                          query_string={"type": "temperature", "interval": "1d", "tz": zone})
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["tz"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Asia/Kathmandu", "Australia/Lord_Howe", "Factory"])
def test_iana_time_zone_is_accepted(client, zone):
    response = client.get("/devices/dev-1/readings/series/",
                          query_string={"type": "temperature", "interval": "1d", "tz": zone})
    assert response.status_code == 200 and response.get_json()["tz"] == zone


@pytest.mark.parametrize("device", [".", ".."])
def test_dot_segment_device_ids_are_422(client, stored_count, device):
    gateway = post(client, "/readings/", [{**GOOD, "device_uuid": device}])
    assert gateway.status_code == 422 and "device_uuid" in gateway.get_json()["errors"]["0"]
    assert stored_count() == 0


@pytest.mark.parametrize("device", ["...", ".a", "a.", ".-", "a..b"])
def test_device_ids_with_dots_are_still_accepted(client, device):
    assert post(client, "/readings/", [{**GOOD, "device_uuid": device}]).status_code == 201
    assert post(client, f"/devices/{device}/readings/", GOOD).status_code == 201


@pytest.mark.parametrize("interval, start", [(str(MAX_EPOCH), MAX_EPOCH), (str(2**62 + 1), 2**62 + 1),
                                             (f"{MAX_EPOCH // 3600}h", MAX_EPOCH)])
def test_series_whose_last_bucket_would_end_past_int64_is_422(client, interval, start):
    response = client.get("/devices/dev-1/readings/series/", query_string={
        "type": "temperature", "interval": interval, "start": start, "end": MAX_EPOCH})
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["interval"]


def test_series_of_the_widest_interval_that_fits_ends_within_int64(client):
    response = client.get("/devices/dev-1/readings/series/", query_string={
        "type": "temperature", "interval": str(MAX_EPOCH), "start": 0, "end": MAX_EPOCH - 1})
    assert response.status_code == 200
    assert [(b["start"], b["end"]) for b in response.get_json()["buckets"]] == [(0, MAX_EPOCH)]


def wsgi_call(wsgi_app, method, path, body, headers=()):
    """Call a WSGI app directly; return (status line, the input stream it was given)."""
    stream = io.BytesIO(body)
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": stream, "wsgi.errors": io.StringIO(),
               "CONTENT_LENGTH": str(len(body)), **dict(headers)}
    statuses = []
    response = wsgi_app(environ, lambda status, response_headers, exc_info=None: statuses.append(status))
    b"".join(response)
    return statuses[0], stream


@pytest.mark.parametrize("path, size", [("/devices/dev-1/readings/", 100), ("/readings/", 64 * 1024),
                                        ("/devices/dev-1/readings/", 64 * 1024 + 1),
                                        ("/devices/dev-1/readings/", 1024 * 1024 - 1),
                                        ("/devices/dev-1/readings/", 4 * 1024 * 1024),
                                        ("/readings/", 8 * 1024 * 1024)])
def test_refused_body_is_read_to_its_end_before_the_answer(make_app, path, size):
    application = make_app(AUTH="tokens")
    status, stream = wsgi_call(application.wsgi_app, "POST", path, b" " * size)
    assert status.startswith(("401", "413"))
    assert stream.tell() == size  # the server can keep the connection: nothing is left unread


def test_body_past_every_route_limit_is_left_to_the_server(make_app):
    application = make_app(AUTH="tokens")
    size = 8 * 1024 * 1024 + 1  # nginx refuses it before the app; a bare server then closes the connection
    status, stream = wsgi_call(application.wsgi_app, "POST", "/readings/", b" " * size)
    assert status.startswith("401") and stream.tell() == 0


def test_counted_input_counts_every_way_of_reading():
    stream = CountedInput(io.BytesIO(b"ab\ncd\nef\ngh"))
    assert stream.read(1) == b"a" and stream.readline() == b"b\n" and stream.readlines(1) == [b"cd\n"]
    assert next(iter(stream)) == b"ef\n" and stream.consumed == 9
    stream.drain(11)
    assert stream.consumed == 11


def test_guards_leave_a_request_without_a_body_untouched():
    seen = []
    guards = RequestGuards(lambda environ, start: seen.append(environ["wsgi.input"]) or [b""], drain_limit=10)
    marker = io.BytesIO()
    guards({"PATH_INFO": "/health", "wsgi.input": marker}, None)
    assert seen == [marker]
