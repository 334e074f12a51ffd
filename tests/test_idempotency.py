"""Idempotency-Key on every POST route: a retry gets the first answer and stores nothing, on both backends."""
import json
import threading
import time

import pytest
import sqlalchemy as sa
from assertions import assert_error

from canary.ingest import idempotency, loading
from canary.ingest.store import insert_readings
from models import IdempotencyKey, SensorData, db

READING = {"type": "temperature", "value": 21, "date_created": 1000}
# route -> a valid body and the readings it stores
POSTS = {
    "single": ("/devices/{device}/readings/", {"type": "humidity", "value": 40}, 1),
    "device batch": ("/devices/{device}/readings/", [READING, {**READING, "value": 22}], 2),
    "gateway batch": ("/readings/", [{**READING, "device_uuid": "{device}"}, {**READING, "device_uuid": "g2"}], 2),
}


def post(client, route, device, key=None, body=None, headers=None):
    path, default, _ = POSTS[route]
    text = json.dumps(default if body is None else body).replace("{device}", device)
    headers = {**({} if key is None else {idempotency.HEADER: key}), **(headers or {})}
    return client.post(path.format(device=device), data=text, headers=headers)


def stored(application):
    with application.app_context(), db.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(SensorData.__table__)).scalar()


def keys(application):
    with application.app_context(), db.engine.connect() as connection:
        return connection.execute(sa.select(IdempotencyKey.key, IdempotencyKey.status)).all()


@pytest.mark.parametrize("route", POSTS)
def test_retry_with_the_same_key_answers_the_first_response_and_stores_nothing(app, client, device, route):
    first = post(client, route, device, key="k-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = post(client, route, device, key="k-1")
        assert (again.status_code, again.data) == (201, first.data)
        assert again.headers["Idempotent-Replayed"] == "true"
    assert stored(app) == POSTS[route][2]
    assert post(client, route, device, key="k-2").status_code == 201  # another key is another request
    assert stored(app) == 2 * POSTS[route][2]


def test_retry_of_a_reading_without_a_date_keeps_the_first_date(app, client, device, monkeypatch):
    first = post(client, "single", device, key="dateless")
    later = first.get_json()["date_created"] + 60
    monkeypatch.setattr(loading, "now_epoch_seconds", lambda: later)  # the retry comes a minute later
    assert post(client, "single", device, key="dateless").get_json() == first.get_json()
    assert post(client, "single", device, key="fresh").get_json()["date_created"] == later
    assert stored(app) == 2


@pytest.mark.parametrize("route", POSTS)
def test_same_key_with_another_body_is_422_and_stores_nothing(app, client, device, route):
    assert post(client, route, device, key="k").status_code == 201
    other = [dict(READING, value=99)] if route != "single" else {"type": "humidity", "value": 41}
    if route == "gateway batch":
        other = [{**READING, "device_uuid": device, "value": 99}]
    body = assert_error(post(client, route, device, key="k", body=other), 422)
    assert list(body["errors"]) == [idempotency.HEADER]
    assert stored(app) == POSTS[route][2]


def test_same_key_on_another_device_path_is_422_for_one_token(make_app, issue, device):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "ingest")}
    client = application.test_client()
    assert post(client, "single", device, key="k", headers=headers).status_code == 201
    assert_error(post(client, "single", device + "-2", key="k", headers=headers), 422)
    assert stored(application) == 1


def test_keys_are_scoped_to_their_token_or_device(make_app, issue, device):
    application = make_app(AUTH="tokens")
    client = application.test_client()
    for kind in ("ingest", "ingest"):  # two tokens of one kind: two scopes
        headers = {"Authorization": "Bearer " + issue(application, kind)}
        assert post(client, "single", device, key="shared", headers=headers).status_code == 201
    assert stored(application) == 2
    open_client = make_app().test_client()
    for name in (device, device + "-other"):  # open mode: one scope per device in the URL
        assert post(open_client, "single", name, key="shared").status_code == 201


@pytest.mark.parametrize("key", ["", '"', "a\\b", "é", "x" * 256, "tab\there", '"unterminated', "line\nbreak"])
def test_malformed_key_is_400_and_stores_nothing(app, client, device, key):
    try:
        response = post(client, "single", device, key=key)
    except ValueError:  # the test client itself refuses a newline in a header value
        return
    assert_error(response, 400)
    assert stored(app) == 0 and keys(app) == []


@pytest.mark.parametrize("key", ["a", '"quoted-key"', "x" * 255, "8e4a2f3c-uuid-like-0001", "spaces are fine"])
def test_wellformed_keys_are_taken(app, client, device, key):
    assert post(client, "single", device, key=key).status_code == 201
    assert keys(app) == [(key.strip('"'), 201)]


def test_invalid_request_gives_its_key_back_for_a_corrected_retry(app, client, device):
    assert_error(post(client, "single", device, key="k", body={"type": "humidity", "value": 500}), 422)
    assert keys(app) == []
    assert post(client, "single", device, key="k").status_code == 201
    assert stored(app) == 1


def pending(application, key, path, body, lease_until, scope):
    """Insert a claim of a request still in flight (or dead), as a first request would have left it."""
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.insert(IdempotencyKey).values(
            scope=scope, key=key, owner="someone", created_at=time.time(), lease_until=lease_until,
            request_hash=idempotency.request_hash("POST", path, body)))


def test_retry_while_the_first_is_in_flight_is_409(app, client, device):
    body = json.dumps(POSTS["single"][1]).encode()
    path = f"/devices/{device}/readings/"
    pending(app, "busy", path, body, time.time() + 60, f"device:{device}")
    response = client.post(path, data=body, headers={idempotency.HEADER: "busy"})
    assert_error(response, 409)
    assert response.headers["Retry-After"] == "1"
    assert stored(app) == 0


def test_retry_after_the_first_died_takes_the_key_over(app, client, device):
    body = json.dumps(POSTS["single"][1]).encode()
    path = f"/devices/{device}/readings/"
    pending(app, "orphan", path, body, time.time() - 1, f"device:{device}")
    assert client.post(path, data=body, headers={idempotency.HEADER: "orphan"}).status_code == 201
    assert stored(app) == 1 and keys(app) == [("orphan", 201)]


def test_first_request_whose_key_was_taken_over_stores_nothing(make_app, device):
    application = make_app(IDEMPOTENCY_LEASE_SECONDS=0)  # every claim is taken over at once
    path, body = f"/devices/{device}/readings/", json.dumps([READING])
    claims = []
    for _ in range(2):
        with application.test_request_context(path, method="POST", data=body,
                                              headers={idempotency.HEADER: "raced"}):
            claims.append(idempotency.claim(device))
    first, retry = claims
    with application.app_context():
        insert_readings([{**READING, "device_uuid": device}], "device_batch", retry, b'{"count":1}\n')
        with pytest.raises(idempotency.LostClaim):
            insert_readings([{**READING, "device_uuid": device}], "device_batch", first, b'{"count":1}\n')
    assert stored(application) == 1


def test_expired_key_is_a_new_key(make_app, device):
    application = make_app(IDEMPOTENCY_RETENTION_SECONDS=60)
    client = application.test_client()
    assert post(client, "single", device, key="old").status_code == 201
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.update(IdempotencyKey).values(created_at=time.time() - 120))
    again = post(client, "single", device, key="old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert stored(application) == 2


def test_expiry_deletes_old_keys_without_touching_the_readings(make_app, device, monkeypatch):
    application = make_app(IDEMPOTENCY_RETENTION_SECONDS=60)
    client = application.test_client()
    for number in range(5):
        assert post(client, "single", device, key=f"k{number}").status_code == 201
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.update(IdempotencyKey).where(IdempotencyKey.key != "k4").values(
            created_at=time.time() - 120))
    monkeypatch.setattr(idempotency, "_last_expiry", [0.0])
    assert post(client, "single", device, key="new").status_code == 201
    assert sorted(key for key, _ in keys(application)) == ["k4", "new"]
    assert stored(application) == 6


def test_concurrent_sends_of_one_key_store_it_once(make_app, device):
    application = make_app()
    client_of = threading.local()
    answers = []

    def send(number):
        if not hasattr(client_of, "client"):
            client_of.client = application.test_client()
        key = f"k{number // 4}"  # four sends of each key, at once
        answers.append(post(client_of.client, "single", device, key=key,
                            body={"type": "humidity", "value": number // 4 % 100}).status_code)

    threads = [threading.Thread(target=lambda start=start: [send(n) for n in range(start, 200, 8)])
               for start in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) <= {201, 409} and answers.count(201) >= 50
    assert stored(application) == 50
    assert sorted(keys(application)) == sorted((f"k{n}", 201) for n in range(50))
