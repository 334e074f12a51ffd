"""Request ids, the JSON request log and /metrics, in one process; tests/test_operations.py runs them served."""
import datetime
import json
import os
import re
import select

import pytest
from assertions import assert_error, wait_until
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from canary.monitoring import request_log
from canary.monitoring.observer import CLIENT_REQUEST_ID
from models import db

READING = {"type": "temperature", "value": 21}
GENERATED_ID = re.compile(r"[0-9a-f]{32}\Z")


def samples(client, headers=None):
    """Scrape /metrics and return {(name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(scraped, name, **labels):
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("sent, kept", [
    ("client-chosen.id:1", True), ("x" * 128, True), ("x" * 129, False), ("spaces here", False), ("", False),
    ("<script>", False), ("a/b", False), ("é", False)])
def test_request_id_is_the_clients_when_tame_else_a_new_one(client, device, sent, kept):
    response = client.post(f"/devices/{device}/readings/", json=READING, headers={"X-Request-ID": sent})
    echoed = response.headers["X-Request-ID"]
    assert echoed == sent if kept else GENERATED_ID.match(echoed)
    assert bool(CLIENT_REQUEST_ID.match(sent)) == kept


def test_every_request_gets_its_own_id_and_errors_carry_it(client, device):
    ids = {client.get(f"/devices/{device}/readings/").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5 and all(GENERATED_ID.match(rid) for rid in ids)
    body = assert_error(client.post(f"/devices/{device}/readings/", json={"value": 5}, headers={
        "X-Request-ID": "trace-7"}), 422)
    assert body["request_id"] == "trace-7"


def log_lines(path, count):
    """Return the log's lines once it has `count` of them: lines wait in memory for the next deferred flush."""
    def lines():
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    wait_until(lambda: len(lines()) >= count, what=f"{count} log lines")
    return lines()


def test_request_log_has_one_json_line_per_request_and_never_the_token(make_app, issue, device, tmp_path):
    path = tmp_path / "requests.log"
    application = make_app(AUTH="tokens", REQUEST_LOG=str(path))
    token = issue(application, "device", device)
    client = application.test_client()
    created = client.post(f"/devices/{device}/readings/", data=json.dumps(READING),
                          headers={"Authorization": f"Bearer {token}"})
    refused = client.get(f"/devices/{device}/readings/", headers={"Authorization": "Bearer cnry_wrong"})
    missing = client.get("/no/such/path")
    lines = log_lines(path, 3)
    assert [line["request_id"] for line in lines] == [r.headers["X-Request-ID"] for r in (created, refused, missing)]
    first, second, third = lines
    assert first["method"] == "POST" and first["route"] == "/devices/<device_uuid>/readings/"
    assert (first["status"], first["device"], first["token_kind"]) == (201, device, "device")
    assert isinstance(first["token_id"], int)
    assert first["bytes_in"] == len(json.dumps(READING)) and first["bytes_out"] == len(created.data)
    assert 0 < first["duration"] < 10 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert (second["status"], second["token_id"], second["token_kind"]) == (401, None, None)
    assert (third["status"], third["route"], third["path"]) == (404, None, "/no/such/path")
    assert token not in path.read_text() and "cnry_wrong" not in path.read_text()
    assert {line["source"] for line in lines} == {"app"}


@given(st.lists(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False), min_size=1, max_size=5))
def test_request_log_time_is_datetimes_iso_format_to_the_millisecond(epochs):
    for epoch in epochs + [int(epoch) + 0.5 for epoch in epochs]:  # and again within a second already formatted
        moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        assert request_log.utc_time(epoch) == expected


def test_request_log_of_a_streamed_listing_counts_every_byte(make_app, device, tmp_path):
    path = tmp_path / "requests.log"
    application = make_app(REQUEST_LOG=str(path), STREAM_CHUNK_ROWS=3)
    client = application.test_client()
    client.post(f"/devices/{device}/readings/", json=[{**READING, "date_created": n} for n in range(10)])
    listing = client.get(f"/devices/{device}/readings/")
    assert len(listing.get_json()) == 10
    assert log_lines(path, 2)[-1]["bytes_out"] == len(listing.data)


def test_request_log_writes_whole_lines_in_order_never_more_than_pipe_buf_at_once(tmp_path, monkeypatch):
    writes = []
    real_write = os.write
    monkeypatch.setattr(request_log.os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    path = tmp_path / "requests.log"
    log = request_log.LineLog(str(path))
    records = [{"n": n, "path": "/devices/" + "d" * (n % 150) + "/readings/"} for n in range(300)]
    for record in records:
        log.write(record)
    log.flush()
    assert writes and all(len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n") for chunk in writes)
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line for line in written if line["n"] >= 0] == records  # each line whole, once, in order


def test_request_log_follows_its_file_when_logrotate_moves_it(make_app, device, tmp_path, monkeypatch):
    monkeypatch.setattr(request_log, "REOPEN_CHECK_SECONDS", 0.0)
    path = tmp_path / "requests.log"
    client = make_app(REQUEST_LOG=str(path)).test_client()
    client.get("/health")
    log_lines(path, 1)  # written before the move
    path.rename(tmp_path / "requests.log.1")
    client.get("/health")
    client.get("/health")
    assert len(log_lines(path, 2)) == 2 and len(log_lines(tmp_path / "requests.log.1", 1)) == 1


def test_metrics_count_requests_readings_and_token_checks(make_app, issue, device):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "metrics")}
    ingest = {"Authorization": "Bearer " + issue(application, "ingest")}
    client = application.test_client()
    before = samples(client, headers)
    client.post(f"/devices/{device}/readings/", json=READING, headers=ingest)
    client.post(f"/devices/{device}/readings/", json=[READING] * 3, headers=ingest)
    client.post("/readings/", json=[{**READING, "device_uuid": device}] * 4, headers=ingest)
    client.post(f"/devices/{device}/readings/", json=READING)
    after = samples(client, headers)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/devices/<device_uuid>/readings/"
    assert grew("canary_requests_total", route=route, method="POST", status="201") == 2
    assert grew("canary_requests_total", route=route, method="POST", status="401") == 1
    assert grew("canary_requests_total", route="/readings/", method="POST", status="201") == 1
    assert grew("canary_requests_total", route="/metrics", method="GET", status="200") == 1
    assert grew("canary_request_duration_seconds_count", route=route) == 3
    assert [grew("canary_readings_stored_total", via=via) for via in ("single", "device_batch", "gateway_batch")] \
        == [1, 3, 4]
    assert grew("canary_token_checks_total", outcome="accepted") == 4  # 3 POSTs and one scrape
    assert grew("canary_token_checks_total", outcome="missing") == 1
    assert value(after, "process_resident_memory_bytes") > 0


@pytest.mark.parametrize("kind, status", [("metrics", 200), ("read", 403), ("ingest", 403), (None, 401)])
def test_metrics_need_a_metrics_token_in_tokens_mode(make_app, issue, kind, status):
    application = make_app(AUTH="tokens")
    headers = {} if kind is None else {"Authorization": "Bearer " + issue(application, kind)}
    response = application.test_client().get("/metrics", headers=headers)
    assert response.status_code == status
    if status != 200:
        assert_error(response, status)


def test_metrics_turned_off_are_404(make_app):
    assert_error(make_app(METRICS=False).test_client().get("/metrics"), 404)


def test_missing_table_503_is_counted_by_cause(make_app, device):
    application = make_app()
    client = application.test_client()
    before = samples(client)
    with application.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE readings")
    assert_error(client.get(f"/devices/{device}/readings/"), 503)
    assert value(samples(client), "canary_database_unavailable_total", cause="missing_table") \
        == value(before, "canary_database_unavailable_total", cause="missing_table") + 1
