"""What the OpenAPI document says about each route beyond its rule and view: bodies, responses, errors.

To describe a route, add its endpoint to OPERATIONS; a route missing there is left out of the
document, and the test that compares the document with app.url_map fails.
"""
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import metrics
from schemas import (
    CountSchema,
    DeviceReadingSchema,
    DeviceSummarySchema,
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

# The files the docs page loads, with their types: set here so no platform MIME table decides them.
DOCS_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
               "favicon-32x32.png": "image/png", "docs.js": "text/javascript"}
# The dashboard page's own files (dashboard.py serves them), by their types.
DASHBOARD_FILE_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
DASHBOARD_FILES = sorted(path.name for path in (Path(__file__).resolve().parent / "static").iterdir()
                         if path.suffix in DASHBOARD_FILE_TYPES)

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
    parameters: dict = field(default_factory=dict)  # path parameter -> its description, where not PATH_PARAMETERS'


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
               "unit that fits), day or week buckets would leave the years 1 to 9999, or the last bucket would end after "
               "2^63-1 seconds.")
SERIES_DESCRIPTION = """Buckets are half-open, [start, end) in epoch seconds. Fixed widths (seconds, s, m, h)
start at whole multiples of the width since the Unix epoch in every zone, and tz is only echoed. Days and
weeks (d, w) follow the calendar of tz: each bucket starts at local midnight, buckets of n days are aligned
to multiples of n local days from Monday 1969-12-29, and of n weeks to multiples of 7n days, so weeks start
on Mondays.

The span runs from the bucket holding start (or the first matching reading) to the one holding end (or the
last); only readings from start to end are counted. With no matching reading and a bound missing, buckets
is []. At most 1,000 buckets, counted before fill=none leaves any out."""

_FILE_ERRORS = {404: "No such file.", 416: "The Range header asks for bytes past the end."}


def _file_responses(what, media_types):
    return {200: (what, {"type": "string"}, *media_types),
            206: ("The bytes the Range header asked for.", {"type": "string"}, *media_types),
            304: ("Unchanged since the ETag or date the request names.", None)}


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
        database=False, errors=_FILE_ERRORS, responses=_file_responses("A file of the docs page.", DOCS_ASSETS.values()),
        parameters={"filename": {"schema": {"type": "string", "enum": list(DOCS_ASSETS)}, "description": "The file."}}),
    "dashboard.fleet": Operation(
        database=False, responses={200: ("The dashboard's fleet view: a page whose script reads the summary route.",
                                         {"type": "string"}, "text/html")}),
    "dashboard.device": Operation(
        database=False, errors={422: "The device id breaks the schema."},
        responses={200: ("The dashboard's view of a device, known or not: a page whose script reads the series and "
                         "statistics routes.", {"type": "string"}, "text/html")}),
    "dashboard.static": Operation(
        database=False, errors=_FILE_ERRORS,
        responses=_file_responses("A script, style sheet or icon of the dashboard page.",
                                  sorted(set(DASHBOARD_FILE_TYPES.values()))),
        parameters={"filename": {"schema": {"type": "string", "enum": DASHBOARD_FILES},
                                 "description": "The file."}}),
}

PATH_PARAMETERS = {
    "device_uuid": {"schema": DeviceReadingSchema().fields["device_uuid"],
                    "description": "The device's id: canonical UUIDs and names such as test_device fit.",
                    "example": "36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f"},
    "metric": {"schema": {"type": "string", "enum": list(metrics.METRICS)}, "description": "The statistic."},
}
