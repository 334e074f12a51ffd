"""GET /devices/<device_uuid>/readings/series/ end to end, against a brute-force oracle."""
import datetime as dt
import json
import re
import uuid
from zoneinfo import ZoneInfo

import oracles
import pytest
from assertions import assert_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metrics_api import assert_same, store

api_settings = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham"]
# Instants next to clock changes: London and New York in spring and autumn 2024, Lord Howe's
# half-hour changes, Chatham's changes at 02:45 local.
CLOCK_CHANGES = [1_711_846_800, 1_729_990_800, 1_710_054_000, 1_730_613_600, 1_712_417_400, 1_728_142_200,
                 1_711_806_300, 1_727_533_800]
SPREAD = 3 * 86_400
INTERVALS = st.one_of(
    st.sampled_from(["15m", "30m", "1h", "90m", "2h", "3h", "7h", "1d", "2d", "3d", "1w", "2w", 3600, 5400, 86_400]),
    st.integers(900, 200_000),
    st.integers(900, 200_000).map(str),
    st.integers(1, 9).map(lambda n: f"{n}d"),
)


def series_path(device):
    return f"/devices/{device}/readings/series/"


def get_series(client, device, filters, how="query"):
    if how == "query":
        return client.get(series_path(device), query_string=filters)
    return client.get(series_path(device), data=json.dumps(filters))


def assert_buckets(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert_same(got, want)


def interval_label(interval):
    amount, unit = oracles.split(interval)
    return f"{amount}{unit}" if unit in oracles.DAYS else amount * oracles.UNITS[unit]


@api_settings
@given(
    around=st.sampled_from(CLOCK_CHANGES),
    readings=st.lists(st.tuples(st.integers(0, 100), st.integers(-SPREAD, SPREAD)), max_size=40),
    noise=st.lists(st.tuples(st.integers(0, 100), st.integers(-2 * SPREAD, 2 * SPREAD)), max_size=5),
    interval=INTERVALS,
    zone=st.sampled_from(ZONES),
    bounds=st.tuples(st.integers(-SPREAD, SPREAD), st.integers(-SPREAD, SPREAD)).map(sorted),
    drop=st.sampled_from(["none", "start", "end", "both"]),
    fill=st.sampled_from([None, "null", "none"]),
    how=st.sampled_from(["query", "body"]),
)
def test_series_matches_oracle(client, around, readings, noise, interval, zone, bounds, drop, fill, how):
    device = "dev-" + uuid.uuid4().hex
    readings = [(value, around + offset) for value, offset in readings]
    if readings:
        store(client, device, readings)
    if noise:
        store(client, device, [(value, around + offset) for value, offset in noise], kind="humidity")
    filters = {"type": "temperature", "interval": interval, "tz": zone,
               "start": around + bounds[0], "end": around + bounds[1]}
    for key in {"none": [], "start": ["start"], "end": ["end"], "both": ["start", "end"]}[drop]:
        del filters[key]
    if fill is not None:
        filters["fill"] = fill
    response = get_series(client, device, filters, how)
    assert response.status_code == 200
    body = response.get_json()
    expected = oracles.series(readings, interval, ZoneInfo(zone), filters.get("start"), filters.get("end"),
                              keep_empty=fill != "none")
    assert {key: body[key] for key in ("device_uuid", "type", "interval", "tz")} == {
        "device_uuid": device, "type": "temperature", "interval": interval_label(interval), "tz": zone}
    assert type(body["interval"]) is type(interval_label(interval))
    assert_buckets(body["buckets"], expected)


def test_series_over_years_of_clock_changes_matches_oracle(client, device):
    # Readings every 20 hours for 900 days cross six clock changes: day buckets need many runs.
    first = 1_672_531_200
    readings = [(index * 37 % 101, first + index * 72_000) for index in range(1080)]
    store(client, device, readings)
    for zone, interval in [("Europe/London", "1d"), ("America/New_York", "2d"), ("Australia/Lord_Howe", "1w"),
                           ("Pacific/Chatham", "1d"), ("UTC", "1d"), ("Asia/Kolkata", 86_400)]:
        response = get_series(client, device, {"type": "temperature", "interval": interval, "tz": zone})
        assert response.status_code == 200
        assert_buckets(response.get_json()["buckets"], oracles.series(readings, interval, ZoneInfo(zone)))


@pytest.mark.parametrize(
    "zone, date, hours",
    [("Europe/London", "2024-03-31", 23), ("Europe/London", "2024-10-27", 25),
     ("America/New_York", "2024-03-10", 23), ("America/New_York", "2024-11-03", 25),
     ("Australia/Lord_Howe", "2024-10-06", 23.5), ("Pacific/Chatham", "2024-09-29", 23),
     ("Asia/Kolkata", "2024-03-31", 24)],
)
def test_day_buckets_across_clock_changes(client, device, zone, date, hours):
    noon = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(12), tzinfo=ZoneInfo(zone))
    store(client, device, [(7, int(noon.timestamp()))])
    response = get_series(client, device, {"type": "temperature", "interval": "1d", "tz": zone})
    (bucket,) = response.get_json()["buckets"]
    assert bucket["end"] - bucket["start"] == hours * 3600
    start = dt.datetime.fromtimestamp(bucket["start"], ZoneInfo(zone))
    assert (start.date(), start.time()) == (noon.date(), dt.time())
    assert (bucket["count"], bucket["mean"]) == (1, 7)


def test_week_buckets_start_on_local_monday(client, device):
    zone = ZoneInfo("America/New_York")
    store(client, device, [(1, 1_704_862_800), (2, 1_705_467_600 + 86_399)])  # Wed 2024-01-10, Wed 2024-01-17
    buckets = get_series(client, device, {"type": "temperature", "interval": "1w", "tz": zone.key}).get_json()
    starts = [dt.datetime.fromtimestamp(bucket["start"], zone) for bucket in buckets["buckets"]]
    assert [(start.date().isoformat(), start.time()) for start in starts] == [
        ("2024-01-08", dt.time()), ("2024-01-15", dt.time())]


@pytest.mark.parametrize("interval, width", [("5m", 300), (300, 300), ("300", 300), ("90s", 90), ("2h", 7200)])
def test_fixed_buckets_align_to_the_epoch_in_any_zone(client, device, interval, width):
    store(client, device, [(5, 1_700_000_123), (6, 1_700_003_000)])
    body = get_series(client, device, {"type": "temperature", "interval": interval, "tz": "Asia/Kolkata"}).get_json()
    assert body["interval"] == width
    assert all(bucket["start"] % width == 0 and bucket["end"] - bucket["start"] == width for bucket in body["buckets"])


def test_fill_null_keeps_empty_buckets_and_none_drops_them(client, device):
    store(client, device, [(10, 1000), (30, 4700)])
    filled = get_series(client, device, {"type": "temperature", "interval": 900}).get_json()["buckets"]
    assert [bucket["start"] for bucket in filled] == [900, 1800, 2700, 3600, 4500]
    assert [bucket["count"] for bucket in filled] == [1, 0, 0, 0, 1]
    assert all(filled[1][key] is None for key in oracles.describe([]) if key != "count")
    sparse = get_series(client, device, {"type": "temperature", "interval": 900, "fill": "none"}).get_json()
    assert sparse["buckets"] == [filled[0], filled[-1]]
    assert get_series(client, device, {"type": "temperature", "interval": 900, "fill": None}, "body").get_json() == (
        get_series(client, device, {"type": "temperature", "interval": 900}).get_json())


def test_bounds_choose_first_and_last_bucket_and_filter_readings(client, device):
    store(client, device, [(1, 1000), (2, 1100), (3, 1200), (4, 2900), (5, 3000)])
    body = get_series(client, device, {"type": "temperature", "interval": 1000, "start": 1050, "end": 2950})
    buckets = body.get_json()["buckets"]
    assert [(bucket["start"], bucket["end"]) for bucket in buckets] == [(1000, 2000), (2000, 3000)]
    assert [(bucket["count"], bucket["min"], bucket["max"]) for bucket in buckets] == [(2, 2, 3), (1, 4, 4)]


def test_bucket_edge_belongs_to_the_later_bucket(client, device):
    store(client, device, [(1, 1999), (2, 2000)])
    buckets = get_series(client, device, {"type": "temperature", "interval": 1000}).get_json()["buckets"]
    assert [(bucket["start"], bucket["count"], bucket["max"]) for bucket in buckets] == [(1000, 1, 1), (2000, 1, 2)]


@pytest.mark.parametrize("filters", [{}, {"start": 5000}, {"end": 5}, {"fill": "none", "start": 0, "end": 10}])
def test_no_matching_reading_is_empty_series(client, device, filters):
    store(client, device, [(1, 100)], kind="humidity")
    if "start" in filters or "end" in filters:
        store(client, device, [(1, 1000)])
    response = get_series(client, device, {"type": "temperature", "interval": 60, **filters})
    assert response.status_code == 200
    assert response.get_json()["buckets"] == []


def test_bounds_without_readings_give_empty_buckets(client, device):
    body = get_series(client, device, {"type": "humidity", "interval": "1h", "start": 0, "end": 7199}).get_json()
    assert [(bucket["start"], bucket["count"], bucket["mean"]) for bucket in body["buckets"]] == [
        (0, 0, None), (3600, 0, None)]


@pytest.mark.parametrize(
    "interval, start, end",
    [(1, 0, 1000), ("1s", 0, 86_400), ("5m", 1_700_000_000, 1_700_000_000 + 366 * 86_400),
     (60, 1_000_003, 1_000_003 + 10**6), ("1h", 0, 1_800_000_000), ("1d", 0, 1_800_000_000),
     ("1w", 0, 1_800_000_000), ("2d", 1_600_000_000, 1_800_000_000)],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Pacific/Chatham"])
def test_over_1000_buckets_names_the_smallest_interval_that_fits(client, device, interval, start, end, zone):
    filters = {"type": "temperature", "tz": zone, "start": start, "end": end}
    body = assert_error(get_series(client, device, {**filters, "interval": interval}), 422)
    named = re.search(r"the smallest interval that fits is (\d+[smhdw]?)\.", body["message"])[1]
    assert body["errors"]["interval"] == [body["message"]]
    unit = oracles.split(interval)[1]
    amount, named_unit = oracles.split(named)
    assert named_unit == unit
    fits = get_series(client, device, {**filters, "interval": named})
    assert fits.status_code == 200 and len(fits.get_json()["buckets"]) <= 1000
    smaller = get_series(client, device, {**filters, "interval": f"{amount - 1}{unit}"})
    assert smaller.status_code == 422


def test_span_of_readings_counts_toward_the_limit(client, device):
    store(client, device, [(1, 0), (2, 1000)])
    body = assert_error(get_series(client, device, {"type": "temperature", "interval": 1}), 422)
    assert "1001 buckets" in body["message"].replace(",", "") and "fits is 2." in body["message"]


BAD_SERIES_FILTERS = [
    ({"interval": None}, "interval"),
    ({"interval": "0"}, "interval"), ({"interval": "-5"}, "interval"), ({"interval": "5x"}, "interval"),
    ({"interval": "1.5h"}, "interval"), ({"interval": ""}, "interval"), ({"interval": "h"}, "interval"),
    ({"interval": "5M"}, "interval"), ({"interval": " 5m"}, "interval"), ({"interval": "5 m"}, "interval"),
    ({"interval": "1mo"}, "interval"), ({"interval": "1y"}, "interval"), ({"interval": "5m5s"}, "interval"),
    ({"interval": "0d"}, "interval"), ({"interval": str(2**63)}, "interval"),
    ({"interval": "20000000000000w"}, "interval"), ({"interval": "3000000d", "start": "0", "end": "0"}, "interval"),
    ({"interval": "1d", "start": "253402300800", "end": "253402300800"}, "interval"),
    ({"tz": "Mars/Olympus"}, "tz"), ({"tz": ""}, "tz"), ({"tz": "europe/london"}, "tz"), ({"tz": "UTC "}, "tz"),
    ({"tz": "../../etc/passwd"}, "tz"), ({"tz": "America"}, "tz"), ({"tz": "+05:00"}, "tz"),
    ({"fill": "zero"}, "fill"), ({"fill": "NULL"}, "fill"), ({"fill": ""}, "fill"),
    ({"start": "20", "end": "10"}, "start"), ({"start": "abc"}, "start"), ({"end": "-1"}, "end"),
    ({"type": None}, "type"), ({"type": "pressure"}, "type"),
    ({"colour": "red"}, "colour"), ({"bucket": "1h"}, "bucket"), ({"limit": "5"}, "limit"),
]


@pytest.mark.parametrize("filters, field", BAD_SERIES_FILTERS)
@pytest.mark.parametrize("how", ["query", "body"])
def test_bad_series_filters_are_422(client, device, filters, field, how):
    store(client, device, [(1, 1000)])
    query = {key: value for key, value in {"type": "temperature", "interval": "1h", **filters}.items()
             if value is not None}
    assert field in assert_error(get_series(client, device, query, how), 422)["errors"]


@pytest.mark.parametrize("interval", [True, False, 1.5, 3600.0, -1, 0, [5], {"h": 1}, None])
def test_bad_json_interval_is_422(client, device, interval):
    body = {"type": "temperature", "interval": interval}
    assert "interval" in assert_error(get_series(client, device, body, "body"), 422)["errors"]


@pytest.mark.parametrize("raw, code", [("{", 400), ("[1]", 422), ('"x"', 422)])
def test_malformed_series_body(client, device, raw, code):
    response = client.get(series_path(device), query_string={"type": "temperature", "interval": 60}, data=raw)
    assert_error(response, code)


def test_series_query_string_wins_over_body(client, device):
    store(client, device, [(10, 1000)])
    store(client, device, [(80, 1000)], kind="humidity")
    response = client.get(series_path(device), query_string={"type": "humidity", "interval": "1h", "tz": "UTC"},
                          data=json.dumps({"type": "temperature", "interval": "1d", "tz": "Europe/London"}))
    body = response.get_json()
    assert (body["type"], body["interval"], body["tz"], body["buckets"][0]["max"]) == ("humidity", 3600, "UTC", 80)


def test_series_route_wins_over_metric_route(client, device):
    store(client, device, [(10, 1000)])
    body = get_series(client, device, {"type": "temperature", "interval": 60}).get_json()
    assert body["device_uuid"] == device and body["buckets"][0]["count"] == 1
    assert client.get(f"/devices/{device}/readings/series", query_string={"type": "temperature",
                                                                         "interval": 60}).get_json() == body
    for metric in ("seriess", "Series", "serie"):
        assert_error(client.get(f"/devices/{device}/readings/{metric}/", query_string={"type": "temperature"}), 404)
    assert_error(client.post(series_path(device), data=json.dumps({"type": "temperature", "value": 1})), 405)


def test_device_named_series_or_summary(client):
    for device in ("series", "summary"):
        store(client, device, [(10, 1000), (20, 2000)])
        body = get_series(client, device, {"type": "temperature", "interval": 3600}).get_json()
        assert (body["device_uuid"], body["buckets"][0]["count"]) == (device, 2)
        assert len(client.get(f"/devices/{device}/readings/").get_json()) == 2
        assert client.get(f"/devices/{device}/readings/max/?type=temperature").get_json()["value"] == 20


@pytest.mark.parametrize("device", ["x" * 65, "a b", "<script>"])
def test_series_hostile_device_id_is_422(client, device):
    response = client.get(f"/devices/{device}/readings/series/", query_string={"type": "temperature",
                                                                              "interval": 60})
    assert "device_uuid" in assert_error(response, 422)["errors"]
