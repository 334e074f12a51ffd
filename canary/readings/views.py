"""The read routes of one device: its readings, one statistic over them; and the health check."""
from flask import Blueprint, Response, abort, current_app, jsonify

import metrics
from canary.access.rules import DEVICE_READ, PUBLIC, access
from canary.openapi.describe import READ_ERRORS, ROLE_404, documented
from canary.readings.listing import json_array, stream_readings
from canary.web.requests import load_filters
from models import check_readings_table
from schemas import (
    HealthSchema,
    ListingQuerySchema,
    MetricQuerySchema,
    QuartilesSchema,
    StatisticReadingSchema,
    StatisticValueSchema,
    StoredReadingSchema,
    load_device_uuid,
)

bp = Blueprint("readings", __name__)

_listing_schema = ListingQuerySchema()
_metric_schema = MetricQuerySchema()


@bp.get("/devices/<device_uuid>/readings/", strict_slashes=False)
@access(DEVICE_READ)
@documented(filters=ListingQuerySchema, errors=READ_ERRORS, responses={
    200: ("The matching readings ordered by date_created, [] when none match.",
          {"type": "array", "items": StoredReadingSchema})})
def list_readings(device_uuid):
    """Stream a device's readings as a JSON array ordered by date_created."""
    device_uuid = load_device_uuid(device_uuid)
    query = load_filters(_listing_schema)
    partitions = stream_readings(device_uuid, current_app.config["STREAM_CHUNK_ROWS"], **query)
    next(partitions)  # run the queries now, so that a failure is still a JSON error
    return Response(json_array(partitions), mimetype="application/json")


@bp.get("/devices/<device_uuid>/readings/<metric>/", strict_slashes=False)
@access(DEVICE_READ)
@documented(
    filters=MetricQuerySchema,
    errors={**READ_ERRORS, 404: f"No reading matches, or the metric is unknown, or {ROLE_404}."},
    responses={200: ("min, max and median: a reading; mean and mode: {value}; quartiles: both hinges.",
                     {"oneOf": [StatisticReadingSchema, StatisticValueSchema, QuartilesSchema]})})
def get_metric(device_uuid, metric):
    """Return one statistic over a device's readings of one type."""
    if metric not in metrics.METRICS:
        abort(404, f"There is no metric '{metric[:64]}'; use one of {', '.join(metrics.METRICS)}.")
    device_uuid = load_device_uuid(device_uuid)
    filters = load_filters(_metric_schema)
    body = metrics.compute(metric, {"device_uuid": device_uuid, **filters})
    if body is None:
        abort(404, f"No {filters['type']} readings match; widen the time range or post readings first.")
    return jsonify(body)


@bp.get("/health", strict_slashes=False)
@access(PUBLIC)
@documented(
    responses={200: ("The readings table answered a one-row query.", HealthSchema)},
    description="Also served at /health/. It answers 200 only when a query reading at most one row of the "
                "readings table succeeds, and 503 otherwise: point load-balancer health checks at it.")
def health():
    """Report whether the readings table can be queried."""
    check_readings_table()
    return {"status": "ok"}
