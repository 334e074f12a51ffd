"""Every metric end to end through the client, against an oracle built on Python's statistics."""
import json
import statistics
import uuid

import pytest
from assertions import assert_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

METRICS = ["min", "max", "median", "mean", "mode", "quartiles"]

# Each example goes through HTTP; a fresh device per example keeps examples apart in one database.
api_settings = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# A narrow date range makes duplicate date_created values common; a small pool of values
# makes ties at the minimum, maximum, middle and mode common.
dates = st.integers(0, 15)
readings_lists = st.one_of(
    st.lists(st.tuples(st.integers(0, 100), dates), min_size=1, max_size=25),
    st.lists(st.integers(0, 100), min_size=1, max_size=4).flatmap(
        lambda pool: st.lists(st.tuples(st.sampled_from(pool), dates), min_size=1, max_size=25)
    ),
)
noise_lists = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 15)), max_size=5)


def number(value):
    """statistics returns floats for whole means and medians; the API must send those as ints."""
    return int(value) if value == int(value) else float(value)


def oracle(metric, device, readings, kind="temperature"):
    """The expected body for a metric over (value, date_created) pairs of one type."""
    values = [value for value, _ in readings]

    def reading(value, date):
        return {"date_created": date, "device_uuid": device, "type": kind, "value": value}

    if metric == "min":
        low = min(values)
        return reading(low, max(date for value, date in readings if value == low))
    if metric == "max":
        high = max(values)
        return reading(high, max(date for value, date in readings if value == high))
    if metric == "median":
        _, date = sorted(readings)[(len(readings) - 1) // 2]
        return {**reading(None, date), "value": number(statistics.median(values))}
    if metric == "mean":
        return {"value": number(statistics.mean(values))}
    if metric == "mode":
        return {"value": min(statistics.multimode(values))}
    ordered = sorted(values)
    half = (len(ordered) + 1) // 2
    return {
        "quartile_1": number(statistics.median(ordered[:half])),
        "quartile_3": number(statistics.median(ordered[len(ordered) - half:])),
    }


def assert_same(actual, expected):
    assert actual == expected
    for key, value in expected.items():
        assert type(actual[key]) is type(value), key


def store(client, device, readings, kind="temperature"):
    batch = [{"type": kind, "value": value, "date_created": date} for value, date in readings]
    response = client.post(f"/devices/{device}/readings/", data=json.dumps(batch))
    assert response.status_code == 201


def get_metric(client, device, metric, filters, how="query"):
    path = f"/devices/{device}/readings/{metric}/"
    if how == "query":
        return client.get(path, query_string=filters)
    return client.get(path, data=json.dumps(filters))


@pytest.mark.parametrize("metric", METRICS)
@api_settings
@given(readings=readings_lists, noise=noise_lists)
def test_metric_matches_statistics(client, metric, readings, noise):
    device = "dev-" + uuid.uuid4().hex
    store(client, device, readings)
    if noise:
        store(client, device, noise, kind="humidity")
    response = get_metric(client, device, metric, {"type": "temperature"})
    assert response.status_code == 200
    assert_same(response.get_json(), oracle(metric, device, readings))


@pytest.mark.parametrize("metric", METRICS)
@api_settings
@given(
    readings=readings_lists,
    bounds=st.tuples(st.integers(0, 16), st.integers(0, 16)).map(sorted),
    drop=st.sampled_from(["none", "start", "end"]),
    how=st.sampled_from(["query", "body"]),
)
def test_metric_within_time_range(client, metric, readings, bounds, drop, how):
    device = "dev-" + uuid.uuid4().hex
    store(client, device, readings, kind="humidity")
    store(client, device, readings)
    filters = {"type": "humidity", "start": bounds[0], "end": bounds[1]}
    filters.pop(drop, None)
    start, end = filters.get("start", 0), filters.get("end", 16)
    inside = [(value, date) for value, date in readings if start <= date <= end]
    response = get_metric(client, device, metric, filters, how)
    if not inside:
        assert response.status_code == 404
        assert response.get_json()["code"] == 404
    else:
        assert response.status_code == 200
        assert_same(response.get_json(), oracle(metric, device, inside, kind="humidity"))


@pytest.mark.parametrize(
    "metric, values, expected",
    [
        ("quartiles", [22, 22, 50, 100], {"quartile_1": 22, "quartile_3": 75}),
        ("quartiles", [22, 50, 100], {"quartile_1": 36, "quartile_3": 75}),
        ("quartiles", [5], {"quartile_1": 5, "quartile_3": 5}),
        ("mean", [1, 2], {"value": 1.5}),
        ("mean", [1, 2, 3], {"value": 2}),
        ("median", [50, 1], {"value": 25.5}),
        ("mode", [9, 9, 3, 3, 7], {"value": 3}),
    ],
)
def test_metric_examples(client, device, metric, values, expected):
    store(client, device, [(value, date) for date, value in enumerate(values)])
    body = get_metric(client, device, metric, {"type": "temperature"}).get_json()
    assert_same({key: body[key] for key in expected}, expected)


def test_min_max_ties_go_to_latest_reading(client, device):
    store(client, device, [(5, 10), (5, 30), (5, 20), (90, 15), (90, 40), (90, 12)])
    low = get_metric(client, device, "min", {"type": "temperature"}).get_json()
    high = get_metric(client, device, "max", {"type": "temperature"}).get_json()
    assert (low["value"], low["date_created"]) == (5, 30)
    assert (high["value"], high["date_created"]) == (90, 40)


def test_median_fields_are_lower_middle_reading(client, device):
    store(client, device, [(40, 9), (10, 1), (40, 3), (60, 2)])
    body = get_metric(client, device, "median", {"type": "temperature"}).get_json()
    assert body == {"date_created": 3, "device_uuid": device, "type": "temperature", "value": 40}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("filters", [{}, {"start": 0, "end": 100}])
def test_metric_requires_type(client, device, metric, filters):
    store(client, device, [(1, 1)])
    response = get_metric(client, device, metric, filters)
    assert response.status_code == 422
    assert "type" in response.get_json()["errors"]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "filters", [{"type": "humidity"}, {"type": "temperature", "start": 2}, {"type": "temperature", "end": 0}]
)
def test_metric_without_matching_readings_is_404(client, device, metric, filters):
    store(client, device, [(1, 1)])
    response = get_metric(client, device, metric, filters)
    assert_error(response, 404)


def test_metric_query_string_wins_over_body(client, device):
    store(client, device, [(10, 1)])
    store(client, device, [(80, 1)], kind="humidity")
    response = client.get(
        f"/devices/{device}/readings/max/", query_string={"type": "humidity"}, data=json.dumps({"type": "temperature"})
    )
    assert response.status_code == 200
    assert response.get_json()["value"] == 80


@pytest.mark.parametrize("metric", ["average", "MIN", "p99", "count"])
def test_unknown_metric_is_404(client, device, metric):
    store(client, device, [(1, 1)])
    response = get_metric(client, device, metric, {"type": "temperature"})
    assert_error(response, 404)
