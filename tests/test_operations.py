"""The production command run as a service: one scrape for every worker, rate limits, the request log, 405s, TLS."""
import json
import os
import signal
import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from assertions import assert_error, wait_until
from prometheus_client.parser import text_string_to_metric_families
from serving import call

from app import create_app
from canary.ingest import idempotency

READING = {"type": "temperature", "value": 21}


def scrape(server, headers=None):
    """Return {(name, sorted labels): value} from the server's /metrics."""
    status, text, _ = call(server.port, "GET", "/metrics", headers=headers)
    assert status == 200, text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(scraped, name, **labels):
    """Sum the samples of a name whose labels include these."""
    return sum(value for (sample, sample_labels), value in scraped.items()
               if sample == name and set(labels.items()) <= set(sample_labels))


def counted(scraped, route):
    """Return the POSTs of a route answered 201, and the single readings stored, that a scrape counts."""
    return (total(scraped, "canary_requests_total", route=route, method="POST", status="201"),
            total(scraped, "canary_readings_stored_total", via="single"))


def stored(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM readings")).scalar()
    finally:
        engine.dispose()


def post_many(port, paths, workers=8):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda path: call(port, "POST", path, READING)[0], paths))


def test_one_scrape_counts_every_worker_even_after_one_is_killed(production, tmp_path):
    server = production(f"sqlite:///{tmp_path}/metrics.db", workers=2)
    statuses = post_many(server.port, [f"/devices/d{n % 7}/readings/" for n in range(300)])
    assert statuses.count(201) == 300
    first = min(server.app_workers())
    route = "/devices/<device_uuid>/readings/"
    # Each worker copies its counts to its files at most FLUSH_SECONDS after counting them.
    wait_until(lambda: counted(scrape(server), route) == (300, 300), what="300 requests and readings counted")
    scraped = scrape(server)
    assert {labels for name, labels in scraped if name == "process_resident_memory_bytes"} == {
        (("worker", "worker0"),), (("worker", "worker1"),)}
    os.kill(first, signal.SIGKILL)  # granian starts the worker again in the same slot
    wait_until(lambda: len(server.app_workers()) == 2 and first not in server.app_workers(), what="a new worker")
    statuses = post_many(server.port, [f"/devices/d{n % 7}/readings/" for n in range(200)])
    assert statuses.count(201) == 200
    wait_until(lambda: counted(scrape(server), route) == (500, 500), what="500 requests and readings counted")
    assert stored(server.env["DATABASE_URL"]) == 500
    scraped = scrape(server)
    assert sorted(value for (name, _), value in scraped.items() if name == "canary_worker_starts") == [1, 2]
    assert len(list((server.runtime_dir() / "metrics").glob("*.db"))) <= 2 * 4  # one file per kind per slot


@pytest.mark.parametrize("auth", ["open", "tokens"])
def test_device_over_its_rate_limit_gets_429s_and_stores_nothing_more(production, tmp_path, issue, auth):
    url = f"sqlite:///{tmp_path}/limits.db"
    server = production(url, CANARY_AUTH=auth, CANARY_LIMIT_DEVICE_WRITES="2", CANARY_LIMIT_DEVICE_WRITES_BURST="10",
                        CANARY_REQUEST_LOG=str(tmp_path / "requests.log"))
    headers = {}
    if auth == "tokens":
        application = create_app({"SQLALCHEMY_DATABASE_URI": url, "AUTH": "tokens"})
        headers = {"Authorization": "Bearer " + issue(application, "ingest")}
    answers = [call(server.port, "POST", "/devices/noisy/readings/", READING, headers=headers) for _ in range(40)]
    statuses = [status for status, _, _ in answers]
    # The burst, plus what the rate refills while the 40 requests are sent.
    assert 11 <= statuses.count(201) <= 11 + 2 * 2 and statuses.count(201) + statuses.count(429) == 40
    refused = next(answer for answer in answers if answer[0] == 429)
    body = assert_error(refused, 429)
    assert refused[2]["Retry-After"] == "1"
    assert call(server.port, "POST", "/devices/quiet/readings/", READING, headers=headers)[0] == 201
    assert stored(url) == statuses.count(201) + 1
    scraped = scrape(server, headers if auth == "open" else {
        "Authorization": "Bearer " + issue(application, "metrics")})
    assert total(scraped, "canary_rate_limited_total", route="device_readings") == statuses.count(429)

    def logged():
        return [json.loads(line) for line in (tmp_path / "requests.log").read_text().splitlines()]

    # The app's lines wait in memory for its next deferred flush; the scrape's is the last.
    wait_until(lambda: len([line for line in logged() if line["path"] != "/health"]) >= 40 + 2, what="42 log lines")
    lines = logged()
    by_id = {line["request_id"]: line for line in lines}
    assert by_id[body["request_id"]]["status"] == 429 and by_id[body["request_id"]]["source"] == "nginx"
    sent = [line for line in lines if line["path"] != "/health"]  # the start's health checks aside
    assert len(sent) == 40 + 2 and len(by_id) == len(lines)  # one line per request, the scrape included


def test_request_log_has_a_line_for_every_request_whoever_answered(production, tmp_path):
    log = tmp_path / "requests.log"
    server = production(f"sqlite:///{tmp_path}/log.db", CANARY_REQUEST_LOG=str(log))
    sent = [
        call(server.port, "POST", "/devices/d1/readings/", READING, headers={"X-Request-ID": "mine-1"}),
        call(server.port, "POST", "/devices/d1/readings/", "x" * (2 * 1024 * 1024)),  # nginx: 413
        call(server.port, "TRACE", "/devices/d1/readings/"),  # nginx: 405
        call(server.port, "GET", "/devices/d1/readings/?type=humidity"),
    ]
    def logged():
        return [line for line in map(json.loads, log.read_text().splitlines()) if line["path"] != "/health"]

    wait_until(lambda: len(logged()) >= 4, what="four log lines")  # the start's health checks aside
    lines = logged()
    # nginx writes a 413's line only once it has drained the body, so lines need not keep the sending order.
    assert sorted((line["request_id"], line["status"], line["source"]) for line in lines) == sorted(
        (headers["X-Request-ID"], status, source)
        for (status, _, headers), source in zip(sent, ("app", "nginx", "nginx", "app")))
    assert sent[0][2]["X-Request-ID"] == "mine-1"


def test_request_log_keeps_every_line_when_the_server_stops(production, tmp_path):
    log = tmp_path / "requests.log"
    server = production(f"sqlite:///{tmp_path}/stop.db", workers=2, CANARY_REQUEST_LOG=str(log))
    statuses = post_many(server.port, [f"/devices/d{n % 5}/readings/" for n in range(200)])
    assert statuses.count(201) == 200
    assert server.stop() == 0  # at once: each worker writes what it holds in memory as it exits
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len([line for line in lines if line["status"] == 201]) == 200


@pytest.mark.parametrize("path, allowed", [("/devices/d1/readings/", "GET, HEAD, OPTIONS, POST"),
                                           ("/readings/", "OPTIONS, POST"), ("/health", "GET, HEAD, OPTIONS"),
                                           ("/devices/d1/readings/max/?type=humidity", "GET, HEAD, OPTIONS")])
@pytest.mark.parametrize("method", ["TRACE", "DELETE", "PUT"])
def test_every_405_names_the_allowed_methods(production, tmp_path, path, allowed, method):
    server = production(f"sqlite:///{tmp_path}/allow.db", workers=1)
    answer = call(server.port, method, path)
    assert_error(answer, 405)
    assert sorted(answer[2]["Allow"].split(", ")) == sorted(allowed.split(", "))


def self_signed(folder):
    """Make a self-signed certificate for 127.0.0.1 and its key; return their paths."""
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)
    return certificate, key


def test_tls_settings_serve_https_and_http2(production, tmp_path):
    certificate, key = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(certificate))
    server = production(f"sqlite:///{tmp_path}/tls.db", tls=trusting, CANARY_TLS_CERTIFICATE=str(certificate),
                        CANARY_TLS_KEY=str(key))
    status, body, _ = call(server.port, "POST", "/devices/secure/readings/", READING, tls=trusting)
    assert status == 201 and body["device_uuid"] == "secure"
    offering_h2 = ssl.create_default_context(cafile=str(certificate))
    offering_h2.set_alpn_protocols(["h2", "http/1.1"])
    with offering_h2.wrap_socket(socket.create_connection(("127.0.0.1", server.port)),
                                 server_hostname="127.0.0.1") as connection:
        assert connection.selected_alpn_protocol() == "h2"
    plain = call(server.port, "GET", "/health", timeout=5)  # plain HTTP on the TLS port is refused
    assert "https://" in assert_error(plain, 400)["message"]


def test_postgres_start_explains_its_threads_in_one_line(production, postgres_database_uri):
    server = production(postgres_database_uri, workers=1)
    log = server.log()
    assert "Configuration allows spawning up to" not in log
    assert [line for line in log.splitlines() if "app threads per worker" in line] == [
        next(line for line in log.splitlines() if "app threads per worker" in line)]


def test_acknowledged_keys_are_stored_once_across_a_kill(production, tmp_path):
    url = f"sqlite:///{tmp_path}/crash.db"
    server = production(url)
    path = "/devices/crashy/readings/"
    for number in range(20):
        assert call(server.port, "POST", path, {**READING, "value": number},
                    headers={idempotency.HEADER: f"k{number}"})[0] == 201
    server.kill()
    server.start()
    for number in range(25):  # the 20 again, and 5 new ones
        status, body, headers = call(server.port, "POST", path, {**READING, "value": number},
                                     headers={idempotency.HEADER: f"k{number}"})
        assert status == 201 and body["value"] == number
        assert (headers.get("Idempotent-Replayed") == "true") == (number < 20)
    assert stored(url) == 25
