"""Fuzzing from the OpenAPI document: schemathesis drives every operation in-process, on each backend.

No check is excluded. Three things are adjusted, each because the document cannot say it in OpenAPI:
- negative_data_rejection also expects 413: a batch over MAX_BATCH breaks the document's maxItems and the
  API refuses it with 413 (README), a status the check does not expect by default;
- shape (below) keeps valid generated GET filters to the two rules JSON Schema cannot state: start not after
  end, and a series' buckets within their limits (the GET routes' JSON bodies are described in words, so
  nothing generates one; tests/test_readings_api.py and others send them);
- the document is loaded as a dict rather than with from_wsgi, which would skip GET /openapi.json.
"""
import datetime as dt
import re
import zoneinfo

import oracles
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config._checks import NegativeDataRejectionConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from canary.statistics.buckets import MAX_BUCKETS

pytestmark = pytest.mark.fuzzing

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]
# A small MAX_BATCH lets generated batches reach and pass maxItems.
FUZZ_CONFIG = {"MAX_BATCH": 50, "AUTH": "open"}
EXAMPLES_PER_OPERATION = 150

NEGATIVE_STATUSES = [*NegativeDataRejectionConfig().expected_statuses, "413"]
schema = schemathesis.openapi.from_dict(
    create_app(FUZZ_CONFIG).test_client().get("/openapi.json").get_json(),
    config=schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}}}),
)
EXAMPLE_DEVICE = schema.raw_schema["paths"]["/devices/{device_uuid}/readings/"]["parameters"][0]["example"]
SERIES_PATH = "/devices/{device_uuid}/readings/series/"
# The likeliest generated devices: "0" is where generation from the id's pattern starts, the other is its example.
# Each has readings at both ends of the epoch range, and a day of hourly readings from the epoch, where generated
# bounds and intervals often land, so series hold full buckets as well as empty ones.
SEED_READINGS = [
    (device, kind, value, date) for device in ("0", EXAMPLE_DEVICE) for kind in ("temperature", "humidity")
    for value, date in [(0, 0), (21, 0), (35, 1), (100, 2**63 - 1),
                        *(((hour * 37 + len(kind)) % 101, hour * 3600 + 59) for hour in range(24))]
]


def _bound(value):
    """Return a start or end filter as the server reads it, or None if it is not a valid one."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,30}", value):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _series_span(device, filters):
    """Return the first and last instant a valid series spans (README: bounds, else the readings), or None."""
    start, end = _bound(filters.get("start")), _bound(filters.get("end"))
    if start is not None and end is not None:
        return start, end
    dates = [date for seeded, kind, _, date in SEED_READINGS if (seeded, kind) == (device, filters["type"])
             and (start is None or date >= start) and (end is None or date <= end)]
    if not dates:
        return None
    return (min(dates) if start is None else start), (max(dates) if end is None else end)


def _series_fits(interval, zone, first, last):
    """Tell whether the buckets from first to last number at most MAX_BUCKETS and lie within the dates the API
    takes: up to 2^63-1 seconds, and for days and weeks the years 1 to 9999 (README), reckoned by the oracle
    rather than the app's buckets.py."""
    amount, unit = oracles.split(interval)
    if unit not in oracles.DAYS:
        width = amount * oracles.UNITS[unit]
        return last // width - first // width < MAX_BUCKETS and (last // width + 1) * width <= 2**63 - 1
    days = amount * oracles.DAYS[unit]
    try:
        first_day, last_day = oracles.local_day(first, zone), oracles.local_day(last, zone)
    except (OverflowError, ValueError, OSError):
        return False
    # A day's margin keeps the search for a midnight inside a clock change away from the calendar's end.
    calendar_end = (dt.date.max - oracles.ORIGIN).days - 1
    return last_day // days - first_day // days < MAX_BUCKETS and (last_day // days + 1) * days <= calendar_end


def _fit_series(case):
    """Give a valid series whose buckets would not fit a fixed interval making at most 100 buckets of its span.

    No bucket of a fixed width that holds an instant past 2^62 ends by 2^63-1 unless it is wider than the span
    allows, so such a span is first cut at 2^62.
    """
    span = _series_span(case.path_parameters["device_uuid"], case.query)
    if span is None:
        return  # no reading and a bound missing: no buckets at all
    first, last = span
    if _series_fits(case.query["interval"], zoneinfo.ZoneInfo(case.query.get("tz", "UTC")), first, last):
        return
    if last > 2**62:
        first, last = min(first, 2**62), 2**62
        case.query.update(start=str(first), end=str(last))
    case.query["interval"] = str((last - first) // 99 + 1)  # then last // width - first // width <= 99


@schema.hook
def map_case(context, case):
    """Shape each generated case (see shape)."""
    return shape(case)


def shape(case):
    """Shape valid GET filters to the two rules the document's JSON Schema cannot state.

    Start after end is a 422, so valid filters keep start at or before end. And a series of more than 1,000
    buckets, of day or week buckets beyond the year 9999, or whose last bucket would end past 2^63-1, is a 422
    that depends on the bounds, the readings and the zone, so a valid series that would be one is fitted.
    """
    if case.method != "GET" or case.meta is None or not case.meta.generation.mode.is_positive or not case.query:
        return case
    start, end = _bound(case.query.get("start")), _bound(case.query.get("end"))
    if start is not None and end is not None and start > end:
        case.query["start"] = case.query["end"]
    if case.path == SERIES_PATH:
        _fit_series(case)
    return case


@pytest.fixture
def fuzz_app(make_app):
    """An app where the likeliest generated devices have readings, so statistics answer 200 as well as 404, and
    series and the summary hold buckets and rows with readings."""
    application = make_app(**FUZZ_CONFIG)
    readings = [{"device_uuid": device, "type": kind, "value": value, "date_created": date}
                for device, kind, value, date in SEED_READINGS]
    client = application.test_client()
    for batch in range(0, len(readings), FUZZ_CONFIG["MAX_BATCH"]):
        assert client.post("/readings/", json=readings[batch:batch + FUZZ_CONFIG["MAX_BATCH"]]).status_code == 201
    return application


@pytest.fixture
def fuzz_cases(request, database_uri):
    """Count this test's generated cases where the terminal summary (conftest.py) finds them."""
    cases = {"backend": database_uri.split(":")[0].split("+")[0], "cases": 0}
    request.node.user_properties.append(("fuzz_cases", cases))
    return cases


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case, fuzz_app, fuzz_cases):
    fuzz_cases["cases"] += 1
    shape(case)  # again: some of schemathesis's phases send cases their hooks never saw
    case.call_and_validate(checks=CHECKS, app=fuzz_app)


GATEWAY_READING = {"device_uuid": "0", "type": "humidity", "value": 0}


@pytest.mark.parametrize(
    "method, path, parameters, query, body, status",
    [
        # An open server (the testing default) takes requests without a token; the document makes it optional there.
        ("POST", "/readings/", {}, None, [GATEWAY_READING], 201),
        ("GET", "/devices/{device_uuid}/readings/", {"device_uuid": "0"}, {"type": "temperature"}, None, 200),
        # start after end is a 422 the schema cannot state; the parameter's description states it.
        ("GET", "/devices/{device_uuid}/readings/{metric}/", {"device_uuid": "0", "metric": "min"},
         {"type": "temperature", "start": "9223372036854775806", "end": "0"}, {"end": 0, "start": 0}, 422),
        # The query string wins: a bad body filter under a key the query string also gives is never read.
        ("GET", "/devices/{device_uuid}/readings/", {"device_uuid": "0"},
         {"type": "temperature", "start": "0", "end": "0", "limit": "1", "order": "asc"},
         {"end": 0, "limit": 1, "order": "asc", "start": 0, "type": {}}, 200),
        # A whole float is an integer to OpenAPI 3.1's JSON Schema but a float to the API, so the document is
        # OpenAPI 3.0, whose integer excludes it.
        ("GET", "/devices/{device_uuid}/readings/{metric}/", {"device_uuid": "MAX_BATCH", "metric": "mean"},
         {"type": "temperature"}, {"type": "humidity", "end": 335.0, "start": 2564437}, 422),
        ("POST", "/devices/{device_uuid}/readings/", {"device_uuid": "0"}, None,
         {"type": "humidity", "value": 5.0}, 422),
        # A batch over MAX_BATCH (maxItems) is a 413.
        ("POST", "/readings/", {}, None, [GATEWAY_READING] * (FUZZ_CONFIG["MAX_BATCH"] + 1), 413),
        ("POST", "/devices/{device_uuid}/readings/", {"device_uuid": "0"}, None,
         [{"type": "humidity", "value": 0}] * (FUZZ_CONFIG["MAX_BATCH"] + 1), 413),
        # A series whose span needs more than 1,000 buckets is a 422 the schema cannot state (map_case widens
        # the interval of valid ones); so is one whose day or week buckets would pass the year 9999.
        ("GET", SERIES_PATH, {"device_uuid": EXAMPLE_DEVICE},
         {"type": "temperature", "start": "0", "end": "9223372036854775806", "interval": "1", "tz": "Africa/Abidjan",
          "fill": "null"}, {"end": 0, "fill": None, "interval": "1", "start": 0, "type": "humidity", "tz": "UTC"}, 422),
        ("GET", SERIES_PATH, {"device_uuid": "0"}, {"type": "humidity", "interval": "1w", "start": "0"}, None, 422),
        # So is one whose last bucket would end past 2^63-1 seconds.
        ("GET", SERIES_PATH, {"device_uuid": EXAMPLE_DEVICE},
         {"type": "temperature", "start": "0", "end": "9223372036854775806", "interval": "93165374109644201"},
         None, 422),
        ("GET", SERIES_PATH, {"device_uuid": EXAMPLE_DEVICE},
         {"type": "temperature", "start": "0", "end": "9223372036854775806", "interval": str((2**63 - 1) // 49)},
         None, 200),
        # Answers with readings and empty buckets (null statistics) conform to the response schemas.
        ("GET", SERIES_PATH, {"device_uuid": "0"}, {"type": "humidity", "interval": "5h", "end": "100000"},
         {"fill": None, "tz": "Asia/Kolkata"}, 200),
        ("GET", "/devices/summary/", {}, {"type": "humidity", "start": "1"}, {"limit": 1}, 200),
    ],
)
def test_fuzzer_example_answers_as_documented(fuzz_app, stored_count, method, path, parameters, query, body, status):
    before = stored_count()
    sent = {"body": body, "media_type": "application/json"} if body is not None else {}
    case = schema[path][method].Case(path_parameters=parameters, query=query, **sent)
    response = case.call_and_validate(checks=CHECKS, app=fuzz_app)
    assert response.status_code == status
    assert str(status) in schema.raw_schema["paths"][path][method.lower()]["responses"]
    if status >= 400:
        assert stored_count() == before
