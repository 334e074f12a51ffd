"""The OpenAPI document, generated at start-up from the schemas and the routes, and its docs page.

To describe a route, add its endpoint to OPERATIONS below; a route missing there is left out of
the document, and the test that compares the document with app.url_map fails.
"""
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify, render_template_string, send_from_directory

import metrics
import openapi_fields
from auth import PUBLIC, access
from schemas import (
    CountSchema,
    DeviceReadingSchema,
    DeviceSummarySchema,
    ErrorSchema,
    HealthSchema,
    ListingQuerySchema,
    MetricQuerySchema,
    QuartilesSchema,
    ReadingSchema,
    SeriesQuerySchema,
    SeriesSchema,
    StatisticReadingSchema,
    StatisticValueSchema,
    StoredReadingSchema,
    SummaryQuerySchema,
)

bp = Blueprint("openapi", __name__)

SWAGGER_UI_DIR = str(files("flask_swagger_ui") / "dist")
# The files the docs page loads, with their types: set here so no platform MIME table decides them.
DOCS_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
               "favicon-32x32.png": "image/png"}
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these for every route by itself

FILTERS_BODY = ("The same filters as the query string, as a JSON object. The query string is the primary "
                "form, since browsers cannot send a body with GET; when both give a key, the query string wins.")
ROLE_404 = "on a server whose CANARY_ROLE leaves this route to servers of the other role"


@dataclass(frozen=True)
class Operation:
    """What the document says about one endpoint beyond what its route and view already tell."""

    responses: dict  # success status -> (description, body schema or None, *media types if not JSON)
    errors: dict = field(default_factory=dict)  # error status -> when the view answers it
    filters: type | None = None  # filter schema: query parameters, and a JSON body on GET
    body: Callable | None = None  # app config -> request body schema
    database: bool = True  # touches the database, so answers 503 when it is unreachable
    description: str = ""


def _device_body(config):
    return {"oneOf": [ReadingSchema, _batch(ReadingSchema, config)]}


def _gateway_body(config):
    return _batch(DeviceReadingSchema, config)


def _batch(schema, config):
    return {"type": "array", "items": schema, "minItems": 1, "maxItems": config["MAX_BATCH"]}


# Refused before the body is parsed, on every route that reads one (parsing.py).
JSON_VALUES_413 = "holds more places where a JSON value can start ('[', '{' or ',') than 8 per reading of a full batch"
_WRITE_ERRORS = {400: "The body is empty or not valid JSON.",
                 404: f"Only {ROLE_404}.",
                 413: "The body is over its byte limit (MAX_CONTENT_LENGTH; MAX_BATCH_CONTENT_LENGTH for "
                      f"POST /readings/), or {JSON_VALUES_413}, or the batch is over MAX_BATCH readings.",
                 422: "The body or the device id breaks the schema; nothing is stored."}
_READ_ERRORS = {400: "The filter body is not valid JSON.",
                404: f"Only {ROLE_404}.",
                413: f"The filter body is over MAX_CONTENT_LENGTH, or {JSON_VALUES_413}.",
                422: "A filter or the device id breaks the schema, the filter body is not a JSON object, "
                     "or start is after end."}
_SERIES_422 = ("A filter or the device id breaks the schema, the filter body is not a JSON object, start is after "
               "end, the span needs more than 1,000 buckets (the message names the smallest interval of the same "
               "unit that fits), or day or week buckets would leave the years 1 to 9999.")
SERIES_DESCRIPTION = """Buckets are half-open, [start, end) in epoch seconds. Fixed widths (seconds, s, m, h)
start at whole multiples of the width since the Unix epoch in every zone, and tz is only echoed. Days and
weeks (d, w) follow the calendar of tz: each bucket starts at local midnight, buckets of n days are aligned
to multiples of n local days from Monday 1969-12-29, and of n weeks to multiples of 7n days, so weeks start
on Mondays.

The span runs from the bucket holding start (or the first matching reading) to the one holding end (or the
last); only readings from start to end are counted. With no matching reading and a bound missing, buckets
is []. At most 1,000 buckets, counted before fill=none leaves any out."""

OPERATIONS = {
    "readings.create_device_readings": Operation(
        body=_device_body, errors=_WRITE_ERRORS,
        responses={201: ("The stored reading, or how many readings a batch stored.",
                         {"oneOf": [StoredReadingSchema, CountSchema]})},
        description="A batch is all or nothing: one invalid reading refuses the whole batch, and the 422 "
                    "names the bad readings by their index."),
    "readings.create_readings": Operation(
        body=_gateway_body, errors=_WRITE_ERRORS,
        responses={201: ("How many readings were stored.", CountSchema)},
        description="Each reading names its own device_uuid. All or nothing, like a device batch."),
    "readings.list_readings": Operation(
        filters=ListingQuerySchema, errors=_READ_ERRORS,
        responses={200: ("The matching readings ordered by date_created, [] when none match.",
                         {"type": "array", "items": StoredReadingSchema})}),
    "readings.get_metric": Operation(
        filters=MetricQuerySchema,
        errors={**_READ_ERRORS, 404: f"No reading matches, or the metric is unknown, or {ROLE_404}."},
        responses={200: ("min, max and median: a reading; mean and mode: {value}; quartiles: both hinges.",
                         {"oneOf": [StatisticReadingSchema, StatisticValueSchema, QuartilesSchema]})}),
    "aggregates.get_series": Operation(
        filters=SeriesQuerySchema, errors={**_READ_ERRORS, 422: _SERIES_422}, description=SERIES_DESCRIPTION,
        responses={200: ("The device, type, interval and zone, and the buckets in time order.", SeriesSchema)}),
    "aggregates.get_summary": Operation(
        filters=SummaryQuerySchema, errors=_READ_ERRORS,
        responses={200: ("A row per device with at least one matching reading, most readings first, then by "
                         "device_uuid in code point order; [] when none match.",
                         {"type": "array", "items": DeviceSummarySchema})},
        description="Statistics are defined as for the statistics routes; type is required."),
    "readings.health": Operation(
        responses={200: ("The readings table answered a one-row query.", HealthSchema)},
        description="Also served at /health/. It answers 200 only when a query reading at most one row of the "
                    "readings table succeeds, and 503 otherwise: point load-balancer health checks at it."),
    "openapi.openapi_document": Operation(
        database=False, responses={200: ("This document.", {"type": "object"})}),
    "openapi.docs": Operation(
        database=False, responses={200: ("The interactive documentation page.", {"type": "string"}, "text/html")}),
    "openapi.docs_asset": Operation(
        database=False, errors={404: "No such file.", 416: "The Range header asks for bytes past the end."},
        responses={200: ("A file of the docs page.", {"type": "string"}, *DOCS_ASSETS.values()),
                   206: ("The bytes the Range header asked for.", {"type": "string"}, *DOCS_ASSETS.values()),
                   304: ("Unchanged since the ETag or date the request names.", None)}),
    "dashboard.fleet": Operation(
        database=False, responses={200: ("The dashboard's fleet view: a page whose script reads the summary route.",
                                         {"type": "string"}, "text/html")}),
    "dashboard.device": Operation(
        database=False, errors={422: "The device id breaks the schema."},
        responses={200: ("The dashboard's view of a device, known or not: a page whose script reads the series and "
                         "statistics routes.", {"type": "string"}, "text/html")}),
}

PATH_PARAMETERS = {
    "device_uuid": {"schema": DeviceReadingSchema().fields["device_uuid"],
                    "description": "The device's id: canonical UUIDs and names such as test_device fit.",
                    "example": "36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f"},
    "metric": {"schema": {"type": "string", "enum": list(metrics.METRICS)}, "description": "The statistic."},
    "filename": {"schema": {"type": "string", "enum": list(DOCS_ASSETS)}, "description": "The file."},
}

DESCRIPTION = """Readings from home devices, and statistics over them.

Request bodies are parsed as JSON whatever the Content-Type header says. A trailing slash on every
route is optional. Any other method on a documented path answers 405 with the error shape below and
an Allow header (components/responses/MethodNotAllowed). A refused request stores nothing.

Every error has one shape: code (the HTTP status), status (its reason phrase), message (what to do),
and, on a 422, errors: for each field or batch index, the list of what is wrong with it.

When the server runs in tokens mode (setting AUTH, environment CANARY_AUTH=tokens; the production
default), every route but the public ones (health, this document and its docs page) needs a bearer
token, and answers 401 without a valid one and 403 when the token's kind may not call it. The token is
checked before the body is read, so those come before any 400, 413 or 422. In open mode
(CANARY_AUTH=open; the development and testing default) no token is needed.

Every route that touches the database answers 503 with Retry-After when the database cannot serve."""


def _error(description, headers=None):
    response = {"description": description, "content": {"application/json": {"schema": ErrorSchema}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer", "minimum": 0}}}
TOKENS_ERRORS = {
    401: "Only with CANARY_AUTH=tokens: the bearer token is missing or not valid (WWW-Authenticate: Bearer).",
    403: "Only with CANARY_AUTH=tokens: the token's kind may not call this route.",
}
DATABASE_ERROR = ("The database cannot serve: unreachable, locked beyond the busy timeout or its storage full "
                  "(Retry-After: 5), or its tables had gone and are being created again (Retry-After: 1). "
                  "Nothing was stored; send the request again after Retry-After seconds.")


def openapi_path(rule):
    """Return a Flask rule such as /devices/<device_uuid>/ as an OpenAPI path: /devices/{device_uuid}/."""
    return re.sub(r"<(?:[^<>]*:)?(\w+)>", r"{\1}", rule.rule)


def build_document(app):
    """Return the OpenAPI document of every described route the app serves."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(title="Canary readings API", version="1", openapi_version="3.0.3", plugins=[marshmallow],
                   info={"description": DESCRIPTION})
    openapi_fields.register(spec, marshmallow)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "A device, ingest or read token; needed only when the server runs with CANARY_AUTH=tokens."})
    spec.components.response("MethodNotAllowed", _error("The path exists but not for this method; the Allow "
                                                        "header lists the methods it takes."))
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        operation = OPERATIONS.get(rule.endpoint)
        if operation is None:
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - AUTOMATIC_METHODS):
            spec.path(openapi_path(rule),
                      operations={method.lower(): _operation(app, marshmallow, rule, view, operation)},
                      parameters=[{"in": "path", "name": name, "required": True, **_path_parameter(marshmallow, name)}
                                  for name in sorted(rule.arguments)])
    return spec.to_dict()


def _path_parameter(marshmallow, name):
    parameter = dict(PATH_PARAMETERS[name])
    if not isinstance(parameter["schema"], dict):
        parameter["schema"] = marshmallow.converter.field2property(parameter["schema"])
    return parameter


def _operation(app, marshmallow, rule, view, operation):
    summary, _, details = (view.__doc__ or "").strip().partition("\n")
    result = {"operationId": rule.endpoint, "tags": [rule.endpoint.partition(".")[0]], "summary": summary,
              "description": operation.description or details.strip(), "responses": {}}
    for status, (description, schema, *media_types) in operation.responses.items():
        result["responses"][status] = {"description": description}
        if schema is not None:
            result["responses"][status]["content"] = {
                media_type: {"schema": schema} for media_type in media_types or ["application/json"]}
    errors = dict(operation.errors)
    if view.access_rule != PUBLIC:
        # An open server (the default) takes requests with or without a token.
        tokens = app.config.get("AUTH", "open") == "tokens"
        result["security"] = [{"bearerAuth": []}] if tokens else [{"bearerAuth": []}, {}]
        errors.update(TOKENS_ERRORS)
    if operation.database:
        errors[503] = DATABASE_ERROR
    for status, description in sorted(errors.items()):
        result["responses"][status] = _error(description, _RETRY_AFTER if status == 503 else None)
    if operation.filters is not None:
        result["parameters"] = [
            {**parameter, "schema": openapi_fields.as_query_text(parameter["schema"])}
            for parameter in marshmallow.converter.schema2parameters(operation.filters, location="query")]
        result["requestBody"] = {"required": False, "description": FILTERS_BODY, "content": {
            "application/json": {"schema": operation.filters(partial=True)}}}
    if operation.body is not None:
        result["requestBody"] = {"required": True, "description": "Parsed as JSON whatever the Content-Type says.",
                                 "content": {"application/json": {"schema": operation.body(app.config)}}}
    return result


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Canary readings API</title>
  <link rel="stylesheet" href="{{ url_for('openapi.docs_asset', filename='swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ url_for('openapi.docs_asset', filename='favicon-32x32.png') }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ url_for('openapi.docs_asset', filename='swagger-ui-bundle.js') }}"></script>
  <script>
    // validatorUrl null: Swagger UI would otherwise send the document to an online validator.
    window.ui = SwaggerUIBundle({url: "{{ url_for('openapi.openapi_document') }}", dom_id: "#swagger-ui",
                                deepLinking: true, validatorUrl: null});
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
@access(PUBLIC)
def openapi_document():
    """Return the OpenAPI document of this API."""
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
@access(PUBLIC)
def docs():
    """Serve the interactive documentation page, which needs no other host."""
    return render_template_string(DOCS_PAGE)


@bp.get(f"/docs/assets/<any({', '.join(repr(name) for name in DOCS_ASSETS)}):filename>")
@access(PUBLIC)
def docs_asset(filename):
    """Serve a file of the docs page from the pinned Swagger UI package."""
    return send_from_directory(SWAGGER_UI_DIR, filename, mimetype=DOCS_ASSETS[filename])
