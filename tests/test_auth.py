"""Access control: every routed endpoint against every kind of credential, in both modes."""
import base64
import json

import pytest
import sqlalchemy as sa
from assertions import assert_error

from app import create_app
from canary.access.rules import DEVICE_READ, DEVICE_WRITE, FLEET_READ, GATEWAY_WRITE, METRICS_READ, PUBLIC, rule_of
from canary.cli.tokens import store_tokens
from canary.ingest.store import insert_readings
from models import SensorData, db

READING = {"type": "temperature", "value": 21, "date_created": 1000}
OTHER_DEVICE = "someone-else"


class Example:
    """A valid request to one endpoint for the device {device}, and what it answers when allowed."""

    def __init__(self, path, body=None, status=200, stores=0):
        self.path, self.body, self.status, self.stores = path, body, status, stores

    def send(self, client, method, device, headers):
        body = None if self.body is None else json.dumps(self.body).replace("{device}", device)
        return client.open(self.path.format(device=device), method=method, data=body, headers=headers)


# One valid request per routed (endpoint, method). A route added without an example fails the matrix.
EXAMPLES = {
    ("ingest.create_device_readings", "POST"): Example("/devices/{device}/readings/", READING, 201, stores=1),
    ("ingest.create_readings", "POST"): Example(
        "/readings/", [{**READING, "device_uuid": "{device}"}, {**READING, "device_uuid": "{device}"}], 201, stores=2),
    ("readings.list_readings", "GET"): Example("/devices/{device}/readings/"),
    ("readings.get_metric", "GET"): Example("/devices/{device}/readings/max/?type=temperature"),
    ("readings.health", "GET"): Example("/health"),
    ("statistics.get_series", "GET"): Example("/devices/{device}/readings/series/?type=temperature&interval=1h"),
    ("statistics.get_summary", "GET"): Example("/devices/summary/?type=temperature"),
    ("monitoring.metrics_page", "GET"): Example("/metrics"),
    ("openapi.openapi_document", "GET"): Example("/openapi.json"),
    ("openapi.docs", "GET"): Example("/docs"),
    ("openapi.docs_asset", "GET"): Example("/docs/assets/swagger-ui.css"),
    ("dashboard.fleet", "GET"): Example("/dashboard/"),
    ("dashboard.device", "GET"): Example("/dashboard/devices/{device}/"),
    ("dashboard.static", "GET"): Example("/dashboard/static/dashboard.css"),
}

# Which credentials each rule lets through in tokens mode; every credential passes in open mode.
CREDENTIALS = ("none", "malformed", "unknown", "revoked", "own device", "other device", "ingest", "read", "metrics")
ALLOWED = {
    PUBLIC: set(CREDENTIALS),
    DEVICE_WRITE: {"own device", "ingest"},
    GATEWAY_WRITE: {"own device", "ingest"},
    DEVICE_READ: {"own device", "read"},
    FLEET_READ: {"read"},
    METRICS_READ: {"metrics"},
}
CHALLENGES = {
    "none": 'Bearer realm="canary"',
    "malformed": 'Bearer realm="canary", error="invalid_request"',
    "unknown": 'Bearer realm="canary", error="invalid_token"',
    "revoked": 'Bearer realm="canary", error="invalid_token"',
}


def routed_endpoints(application):
    """Return (endpoint, method, rule) for every routed view, discovered from the URL map."""
    found = set()
    for url_rule in application.url_map.iter_rules():
        for method in url_rule.methods - {"HEAD", "OPTIONS"}:
            found.add((url_rule.endpoint, method, rule_of(application, url_rule.endpoint)))
    return sorted(found, key=str)


ROUTES = routed_endpoints(create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "AUTH": "open"}))


def authorization(application, issue, credential, device):
    """Return the request headers that carry a credential for the device."""
    tokens = {
        "unknown": lambda: "cnry_" + "A" * 43,
        "revoked": lambda: issue(application, "device", device, revoked=True),
        "own device": lambda: issue(application, "device", device),
        "other device": lambda: issue(application, "device", OTHER_DEVICE),
        "ingest": lambda: issue(application, "ingest"),
        "read": lambda: issue(application, "read"),
        "metrics": lambda: issue(application, "metrics"),
    }
    if credential == "none":
        return {}
    if credential == "malformed":
        return {"Authorization": "Token " + issue(application, "ingest")}
    return {"Authorization": f"Bearer {tokens[credential]()}"}


def stored(application):
    with application.app_context():
        return db.session.execute(sa.select(sa.func.count()).select_from(SensorData.__table__)).scalar_one()


def test_every_route_has_an_access_rule():
    unmarked = [(endpoint, method) for endpoint, method, rule in ROUTES if rule is None]
    assert unmarked == [], "mark these views with @access(...) from auth.py"


@pytest.mark.parametrize("mode", ["open", "tokens"])
@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("endpoint, method, rule", ROUTES, ids=[f"{e}-{m}" for e, m, _ in ROUTES])
def test_access_matrix(make_app, issue, device, endpoint, method, rule, credential, mode):
    example = EXAMPLES.get((endpoint, method))
    if example is None:
        pytest.fail(f"No example request for {method} {endpoint}; add one to EXAMPLES in {__name__}")
    application = make_app(AUTH=mode)
    with application.app_context():
        # so that statistics have something to answer
        insert_readings([{**READING, "device_uuid": device}], "device_batch")
    headers = authorization(application, issue, credential, device)
    before = stored(application)

    response = example.send(application.test_client(), method, device, headers)

    if mode == "open" or credential in ALLOWED[rule]:
        assert response.status_code == example.status, response.get_data(as_text=True)
        assert stored(application) == before + example.stores
        return
    code = 401 if credential in CHALLENGES else 403
    # A gateway batch of another device's readings is refused naming each of them.
    names_readings = rule == GATEWAY_WRITE and credential == "other device"
    body = assert_error(response, code, with_errors=names_readings)
    if code == 401:
        assert response.headers["WWW-Authenticate"] == CHALLENGES[credential]
    else:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="canary", error="insufficient_scope"'
    if names_readings:  # every reading of the example names {device}, so each index is refused
        assert set(body["errors"]) == {str(index) for index in range(len(example.body))}
    assert stored(application) == before


def test_gateway_batch_from_device_token_names_each_other_device_reading(make_app, issue, device):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "device", device)}
    batch = [{**READING, "device_uuid": device}, {**READING, "device_uuid": "b"}, {**READING, "device_uuid": device},
             {**READING, "device_uuid": "c"}]
    client = application.test_client()
    body = assert_error(client.post("/readings/", json=batch, headers=headers), 403, with_errors=True)
    assert set(body["errors"]) == {"1", "3"}
    assert all(messages and all(isinstance(m, str) for m in messages) for messages in body["errors"].values())
    assert stored(application) == 0
    own = [reading for reading in batch if reading["device_uuid"] == device]
    assert client.post("/readings/", json=own, headers=headers).get_json() == {"count": 2}
    assert stored(application) == 2


def test_gateway_batch_is_validated_before_its_devices_are_checked(make_app, issue, device):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "device", device)}
    batch = [{**READING, "device_uuid": "b"}, {**READING, "device_uuid": device, "value": 500}]
    assert_error(application.test_client().post("/readings/", json=batch, headers=headers), 422)
    assert stored(application) == 0


def test_ingest_token_posts_a_gateway_batch_for_many_devices(make_app, issue):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "ingest")}
    batch = [{**READING, "device_uuid": name} for name in ("a", "b", "c")]
    assert application.test_client().post("/readings/", json=batch, headers=headers).status_code == 201
    assert stored(application) == 3


def test_unknown_and_revoked_tokens_get_the_same_answer(make_app, issue, device):
    application = make_app(AUTH="tokens")
    client = application.test_client()
    answers = []
    for token in ("cnry_" + "B" * 43, "not-even-prefixed", issue(application, "device", device, revoked=True)):
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "same-for-all"}  # bodies echo it
        response = client.post(f"/devices/{device}/readings/", json=READING, headers=headers)
        answers.append((response.status_code, response.headers["WWW-Authenticate"], response.get_data()))
    assert answers[0][0] == 401
    assert answers.count(answers[0]) == len(answers)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Token abc", "Basic dXNlcjpwdw==", "Bearer a b", "cnry_x",
                                    "Bearer cnry_é", "Bearer=cnry_x", ""])
def test_malformed_authorization_header_is_401_invalid_request(make_app, device, header):
    application = make_app(AUTH="tokens")
    response = application.test_client().get(f"/devices/{device}/readings/", headers={"Authorization": header})
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == CHALLENGES["malformed"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(make_app, issue, device, scheme):
    application = make_app(AUTH="tokens")
    token = issue(application, "read")
    response = application.test_client().get(f"/devices/{device}/readings/",
                                             headers={"Authorization": f"{scheme}  {token}"})
    assert response.status_code == 200


def test_token_is_checked_before_the_body_is_read(make_app, device):
    application = make_app(AUTH="tokens", MAX_CONTENT_LENGTH=16)
    client = application.test_client()
    for body in ("{not json", json.dumps([READING] * 10)):
        response = client.post(f"/devices/{device}/readings/", data=body)
        assert_error(response, 401)


@pytest.mark.parametrize("mode", ["open", "tokens"])
def test_unmarked_route_is_refused_to_every_token(make_app, issue, device, mode):
    application = make_app(AUTH=mode)
    application.add_url_rule("/devices/<device_uuid>/unmarked", "unmarked", lambda device_uuid: {"secret": True})
    client = application.test_client()
    if mode == "open":
        assert client.get(f"/devices/{device}/unmarked").status_code == 200
        return
    assert_error(client.get(f"/devices/{device}/unmarked"), 401)
    for kind, bound in (("device", device), ("ingest", None), ("read", None)):
        headers = {"Authorization": "Bearer " + issue(application, kind, bound)}
        assert_error(client.get(f"/devices/{device}/unmarked", headers=headers), 403)


def test_static_files_are_public(make_app):
    client = make_app(AUTH="tokens").test_client()
    response = client.get("/dashboard/static/dashboard.css")
    assert response.status_code == 200 and response.mimetype == "text/css"
    assert client.get("/static/dashboard.css").status_code == 404  # served once, under the dashboard only


def test_cached_token_costs_no_query_and_no_write(make_app, issue, device):
    application = make_app(AUTH="tokens", TOKEN_CACHE_SECONDS=60)
    headers = {"Authorization": "Bearer " + issue(application, "device", device)}
    statements = []
    with application.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    client = application.test_client()
    assert client.post(f"/devices/{device}/readings/", json=READING, headers=headers).status_code == 201
    token_queries = [sql for sql in statements if "tokens" in sql]
    assert len(token_queries) == 1 and token_queries[0].lstrip().upper().startswith("SELECT")
    for _ in range(5):
        assert client.post(f"/devices/{device}/readings/", json=READING, headers=headers).status_code == 201
        assert client.get(f"/devices/{device}/readings/", headers=headers).status_code == 200
    assert [sql for sql in statements if "tokens" in sql] == token_queries


def test_revoked_token_is_refused_once_the_cache_lifetime_passes(make_app, issue, device):
    application = make_app(AUTH="tokens", TOKEN_CACHE_SECONDS=0)
    token = issue(application, "device", device)
    headers = {"Authorization": f"Bearer {token}"}
    client = application.test_client()
    assert client.post(f"/devices/{device}/readings/", json=READING, headers=headers).status_code == 201
    runner = application.test_cli_runner()
    (token_id,) = [line.split("\t")[0] for line in runner.invoke(args=["tokens", "list"]).stdout.splitlines()]
    result = runner.invoke(args=["tokens", "revoke", token_id])
    assert result.exit_code == 0, result.output
    assert_error(client.post(f"/devices/{device}/readings/", json=READING, headers=headers), 401)
    assert stored(application) == 1


def test_tokens_are_random_256_bit_and_prefixed(make_app):
    application = make_app(AUTH="tokens")
    with application.app_context():
        tokens = store_tokens("read", [None] * 50, None)
    assert len(set(tokens)) == 50
    for token in tokens:
        assert token.startswith("cnry_")
        assert len(base64.urlsafe_b64decode(token[5:] + "=")) * 8 >= 256


def test_role_refusal_comes_before_the_token_check(make_app, monkeypatch, device):
    monkeypatch.setenv("CANARY_ROLE", "query")
    response = make_app(AUTH="tokens").test_client().post(f"/devices/{device}/readings/", json=READING)
    assert_error(response, 404)


def test_unreachable_token_store_is_503_and_stores_nothing(make_app, issue, device):
    application = make_app(AUTH="tokens")
    headers = {"Authorization": "Bearer " + issue(application, "device", device)}
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE tokens RENAME TO tokens_away"))
    assert_error(application.test_client().post(f"/devices/{device}/readings/", json=READING, headers=headers), 503)
    assert stored(application) == 0
