"""The OpenAPI document: valid, complete against the routes, and its docs page served whole by the app."""
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from canary.access.rules import PUBLIC, rule_of
from canary.openapi import page as docs_page
from canary.openapi.document import document_of, openapi_path
from canary.openapi.fields import interval_text_pattern
from canary.readings import views as readings_views
from schemas import MAX_EPOCH_SECONDS, SeriesQuerySchema, zone_names

# Routes the document leaves out, each with its reason.
UNDOCUMENTED_ENDPOINTS = {
    "openapi.docs_asset": "the docs page's own files, not part of the API",
    "dashboard.static": "the dashboard page's own files, not part of the API",
}
# Methods the document leaves out on every path: Flask answers them for every route by itself.
UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}


def documented_operations(document):
    return {(path, method.upper()) for path, item in document["paths"].items()
            for method in item if method != "parameters"}


def served_operations(app):
    return {(openapi_path(rule), method) for rule in app.url_map.iter_rules()
            if rule.endpoint not in UNDOCUMENTED_ENDPOINTS for method in rule.methods - UNDOCUMENTED_METHODS}


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.")


@pytest.mark.parametrize("value, valid", [(5, True), (5.0, False), (5.5, False), ("5", False), (True, False)])
def test_document_integer_is_a_json_integer_as_the_api_reads_it(document, value, valid):
    # OpenAPI 3.0, not 3.1: 3.1's JSON Schema counts 5.0 as an integer, which the API refuses as a float.
    assert document["openapi"] == "3.0.3"
    reading = document["components"]["schemas"]["Reading"]
    assert OAS30Validator(reading).is_valid({"type": "humidity", "value": value}) == valid


def test_document_describes_every_route_and_method(app, document):
    served, documented = served_operations(app), documented_operations(document)
    assert not served - documented, f"describe these routes with @documented: {sorted(served - documented)}"
    assert not documented - served, f"described but not served: {sorted(documented - served)}"


def test_route_without_description_is_left_out_of_the_document(make_app, monkeypatch):
    monkeypatch.delattr(readings_views.health, "openapi_operation")
    app = make_app()
    assert ("/health", "GET") not in documented_operations(document_of(app))
    assert ("/health", "GET") in served_operations(app)


def test_access_rule_gives_security_and_token_errors(app, document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method, operation in operations(document):
        public = rule_of(app, operation["operationId"]) == PUBLIC
        assert ("security" not in operation) == public, (method, path)
        assert ({"401", "403"} <= set(operation["responses"])) == (not public), (method, path)
        if not public:
            assert {"bearerAuth": []} in operation["security"]
            assert "CANARY_AUTH=tokens" in operation["responses"]["401"]["description"]


@pytest.mark.parametrize("auth, security", [("open", [{"bearerAuth": []}, {}]), ("tokens", [{"bearerAuth": []}])])
def test_token_requirement_follows_auth_setting(make_app, auth, security):
    document = document_of(make_app(AUTH=auth))
    assert document["paths"]["/readings/"]["post"]["security"] == security


def test_database_routes_document_503_with_retry_after(document):
    database_free = {"openapi.openapi_document", "openapi.docs", "dashboard.fleet", "dashboard.device"}
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert ("503" in responses) != (operation["operationId"] in database_free), (method, path)
        if "503" in responses:
            assert "Retry-After" in responses["503"]["headers"]


def test_every_error_response_has_the_error_shape(document):
    for _path, _method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert document["components"]["schemas"]["Error"]["required"] == ["code", "message", "request_id", "status"]


@pytest.mark.parametrize("max_batch", [1, 50, 10_000])
def test_batch_max_items_is_max_batch(make_app, max_batch):
    paths = document_of(make_app(MAX_BATCH=max_batch))["paths"]
    device_body = paths["/devices/{device_uuid}/readings/"]["post"]["requestBody"]["content"]["application/json"]
    gateway_body = paths["/readings/"]["post"]["requestBody"]["content"]["application/json"]
    assert device_body["schema"]["oneOf"][1]["maxItems"] == max_batch
    assert gateway_body["schema"]["maxItems"] == max_batch


def test_parameters_carry_patterns_bounds_and_enums(document):
    listing = document["paths"]["/devices/{device_uuid}/readings/"]
    metric = document["paths"]["/devices/{device_uuid}/readings/{metric}/"]
    device = listing["parameters"][0]
    assert (device["name"], device["in"]) == ("device_uuid", "path")
    pattern = re.compile(device["schema"]["pattern"])
    for accepted in ("a", "test_device", "36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f", "...", ".a", "a.", "x" * 64):
        assert pattern.search(accepted), accepted
    for refused in (".", "..", "", "x" * 65, "a b", "a/b"):
        assert not pattern.search(refused), refused
    assert metric["parameters"][1]["schema"]["enum"] == ["min", "max", "median", "mean", "mode", "quartiles"]
    query = {parameter["name"]: parameter for parameter in listing["get"]["parameters"]}
    assert query["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert query["order"]["schema"]["enum"] == ["asc", "desc"]
    assert query["type"]["schema"]["enum"] == ["temperature", "humidity"]
    assert {p["name"]: p["required"] for p in metric["get"]["parameters"]} == {"type": True, "start": False,
                                                                               "end": False}
    assert "requestBody" not in metric["get"] and "the query string wins" in metric["get"]["description"]


SERIES = "/devices/{device_uuid}/readings/series/"


def test_series_and_summary_parameters_say_what_the_api_takes(document):
    series, summary = document["paths"][SERIES]["get"], document["paths"]["/devices/summary/"]["get"]
    query = {parameter["name"]: parameter for parameter in series["parameters"]}
    assert {name: parameter["required"] for name, parameter in query.items()} == {
        "type": True, "start": False, "end": False, "interval": True, "tz": False, "fill": False}
    assert {p["name"]: p["required"] for p in summary["parameters"]} == {
        "type": True, "start": False, "end": False, "limit": False, "offset": False, "sort": False, "order": False}
    # A query string carries every interval as text; a JSON GET body may send seconds as an integer too, which
    # the description says in words.
    assert query["interval"]["schema"] == {"type": "string", "pattern": interval_text_pattern()}
    assert query["fill"]["schema"]["enum"] == ["null", "none"] and "nullable" not in query["fill"]["schema"]
    assert query["tz"]["schema"]["allOf"] == [{"$ref": "#/components/schemas/TimeZone"}]
    names = set(document["components"]["schemas"]["TimeZone"]["enum"])
    assert names == zone_names() and {"UTC", "Europe/London", "Asia/Kathmandu"} <= names
    assert not names & {"localtime", "posixrules"}
    for operation in (series, summary):
        assert "CANARY_ROLE" in operation["responses"]["404"]["description"]
        assert {"400", "401", "403", "404", "413", "422", "503"} <= set(operation["responses"])


def test_series_and_summary_answers_are_described(document):
    schemas = document["components"]["schemas"]
    series = document["paths"][SERIES]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    summary = document["paths"]["/devices/summary/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert series == {"$ref": "#/components/schemas/Series"}
    assert summary["schema"] == {"type": "array", "items": {"$ref": "#/components/schemas/DeviceSummary"}}
    bucket = schemas["Bucket"]
    assert set(bucket["required"]) == {"start", "end", "count", "min", "max", "mean", "median", "mode",
                                       "quartile_1", "quartile_3"}
    assert bucket["properties"]["median"]["nullable"] and not bucket["properties"]["count"].get("nullable")
    assert not any(row.get("nullable") for row in schemas["DeviceSummary"]["properties"].values())


UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# In every unit: the smallest amount of each number of digits, the largest amount and one more, each written
# as it is and with leading zeros to 20 and 21 digits; and malformed texts.
EDGE_INTERVALS = [
    f"{amount:0{width}d}{unit}" for unit, seconds in UNITS.items() for largest in [MAX_EPOCH_SECONDS // seconds]
    for amount in [*(10**digits for digits in range(len(str(largest)))), largest, largest + 1] for width in (1, 20, 21)
] + ["0", "0s", "00", "0d", "5M", "5m ", "5m\n", " 5m", "1.5h", "-1", "+1", "5ms", "", "s", "1y", "٣"]


def api_accepts(text):
    try:
        SeriesQuerySchema().load({"type": "temperature", "interval": text})
    except ValidationError as error:
        assert set(error.messages) == {"interval"}
        return False
    return True


def test_interval_pattern_matches_exactly_the_intervals_the_api_accepts():
    mismatches = [text for text in EDGE_INTERVALS
                  if bool(re.fullmatch(interval_text_pattern(), text)) != api_accepts(text)]
    assert not mismatches


@given(text=st.from_regex(r"\A[0-9]{1,22}[smhdwy]?\Z") | st.from_regex(r"\A0{0,8}[1-9][0-9]{12,18}[smhdw]?\Z"))
def test_interval_pattern_agrees_with_the_api_on_any_amount(text):
    assert bool(re.fullmatch(interval_text_pattern(), text)) == api_accepts(text)


def test_health_and_database_failures_are_described(document):
    health = document["paths"]["/health"]["get"]
    assert "/health/" in health["description"] and "one-row query" in health["responses"]["200"]["description"]
    assert "503" in document["info"]["description"] and "Retry-After" in document["info"]["description"]
    assert "before the body is read" in document["info"]["description"]
    for path, method, operation in operations(document):
        if "requestBody" in operation:
            assert "JSON value" in operation["responses"]["413"]["description"], (method, path)


class AssetLinks(HTMLParser):
    """Collect the URLs a page loads: src and href attributes."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_docs_page_and_every_asset_it_references_are_served(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    parser = AssetLinks()
    parser.feed(page.get_data(as_text=True))
    assert len(parser.urls) == len(docs_page.DOCS_ASSETS)
    for url in parser.urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, f"{url} is on another host"
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.get_data()) > 0
        assert asset.mimetype == docs_page.DOCS_ASSETS[url.rsplit("/", 1)[1]]
    assert 'data-document="/openapi.json"' in page.get_data(as_text=True)
    assert "validatorUrl: null" in client.get("/docs/assets/docs.js").get_data(as_text=True)


def test_docs_page_is_confined_to_this_origin(client):
    page = client.get("/docs")
    policy = dict(directive.split(" ", 1) for directive in page.headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script for the policy to allow


@pytest.mark.parametrize("name", ["index.html", "swagger-ui.js", "../openapi.py", "LICENSE", "nope.css"])
def test_unknown_docs_asset_is_404(client, name):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


@pytest.mark.parametrize("headers, status", [({}, 200), ({"Range": "bytes=0-10"}, 206), ({"If-None-Match": "*"}, 304),
                                             ({"Range": "bytes=999999999-"}, 416)])
def test_docs_asset_answers_ranges_and_conditions(client, headers, status):
    assert client.get("/docs/assets/swagger-ui.css", headers=headers).status_code == status


def test_asset_routes_are_left_out_of_the_document(document):
    assert not [path for path in document["paths"] if "{filename}" in path]


def test_get_operations_take_query_parameters_and_describe_the_body_in_words(document):
    for path, method, operation in operations(document):
        if method == "get" and "parameters" in operation:
            assert "requestBody" not in operation, path  # browsers, and so Swagger UI, cannot send one
            assert "JSON object in the body of the GET" in operation["description"], path


@pytest.mark.parametrize("path", ["/docs", "/docs/", "/openapi.json", "/openapi.json/"])
def test_docs_and_document_answer_with_or_without_a_trailing_slash(client, path):
    assert client.get(path).status_code == 200


PATH_VALUES = {"device_uuid": "dev-1", "metric": "min"}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_undocumented_method_answers_the_documents_405(client, document, stored_count, method):
    assert "MethodNotAllowed" in document["components"]["responses"]
    for path, item in document["paths"].items():
        if method.lower() in item:
            continue
        response = client.open(re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m[1]], path), method=method, json={})
        assert response.status_code == 405, (method, path)
        assert response.get_json()["code"] == 405
        assert set(response.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == {m.upper() for m in item
                                                                                      if m != "parameters"}
    assert stored_count() == 0
