"""The Canary readings API: the application factory, its routes and its JSON errors."""
import json

import msgspec
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from marshmallow import ValidationError

import aggregates
import auth
import dashboard
import metrics
import openapi
import tokens_cli
from auth import DEVICE_READ, DEVICE_WRITE, GATEWAY_WRITE, PUBLIC, access, check_batch_devices
from configmodule import database_uri, environment_overrides, select_config
from errors import register_error_handlers
from request_guards import RequestGuards
from models import READING_KEYS, check_readings_table, configure_engine, db, stream_readings
from parsing import (
    DEVICE_BATCH,
    GATEWAY_BATCH,
    ValidDeviceReading,
    ValidReading,
    load_batch,
    load_filters,
    load_valid_batch,
    load_valid_reading,
    parse_json_body,
)
from schemas import (
    DeviceReadingSchema,
    ListingQuerySchema,
    MetricQuerySchema,
    ReadingSchema,
    load_device_uuid,
)
from writes import create_schema, insert_reading, insert_readings

bp = Blueprint("readings", __name__)


class BufferedResponse(Response):
    """A response whose body, when already whole in memory, goes to the server as one bytes object."""

    def get_app_iter(self, environ):
        """Return a list of one bytes object for a buffered body; a streamed body as Flask streams it."""
        app_iter = super().get_app_iter(environ)
        if not self.is_sequence or self.direct_passthrough:
            return app_iter
        try:
            return [b"".join(app_iter)]
        finally:
            app_iter.close()

ROLES = {"all": None, "ingest": "query", "query": "ingest"}  # role -> the kind of route it refuses
WRITE_ENDPOINTS = {"readings.create_device_readings", "readings.create_readings"}
READ_ENDPOINTS = {
    "readings.list_readings",
    "readings.get_metric",
    "aggregates.get_series",
    "aggregates.get_summary",
}

_reading_schema = ReadingSchema()
_gateway_reading_schema = DeviceReadingSchema()
_listing_schema = ListingQuerySchema()
_metric_schema = MetricQuerySchema()


def refuse_other_role():
    """Answer 404 for routes that this server's role leaves to other servers."""
    refused = ROLES[current_app.config["CANARY_ROLE"]]
    if refused == "ingest" and request.endpoint in WRITE_ENDPOINTS:
        abort(404, "This server only answers queries; send readings to an ingest server.")
    if refused == "query" and request.endpoint in READ_ENDPOINTS:
        abort(404, "This server only takes readings; send queries to a query server.")


@bp.post("/devices/<device_uuid>/readings/", strict_slashes=False)
@access(DEVICE_WRITE)
def create_device_readings(device_uuid):
    """Store one reading (a JSON object) or a batch (a JSON array) for a device."""
    device_uuid = load_device_uuid(device_uuid)
    reading = load_valid_reading()
    if reading is None:
        readings = load_valid_batch(DEVICE_BATCH, device_uuid)
        if readings is None:
            body = parse_json_body(required=True)
            if not isinstance(body, list):
                reading = _reading_schema.load(body)
            else:
                readings = [{**reading, "device_uuid": device_uuid}
                            for reading in load_batch(_reading_schema, ValidReading, body)]
        if readings is not None:
            insert_readings(readings)
            return {"count": len(readings)}, 201
    reading["device_uuid"] = device_uuid
    insert_reading(reading)
    return reading_created(reading)


def reading_created(reading):
    """Answer 201 with the stored reading, encoded by msgspec: on the hot path, jsonify costs ~7 µs more."""
    body = msgspec.json.encode({key: reading[key] for key in READING_KEYS}) + b"\n"
    return BufferedResponse(body, status=201, mimetype="application/json")


@bp.post("/readings/", strict_slashes=False)
@access(GATEWAY_WRITE)
def create_readings():
    """Store a batch of readings for many devices in one transaction."""
    request.max_content_length = current_app.config["MAX_BATCH_CONTENT_LENGTH"]
    readings = load_valid_batch(GATEWAY_BATCH)
    if readings is None:
        body = parse_json_body(required=True)
        if not isinstance(body, list):
            raise ValidationError({"_schema": ["The request body must be a JSON array of readings."]})
        readings = load_batch(_gateway_reading_schema, ValidDeviceReading, body)
    check_batch_devices(readings)
    insert_readings(readings)
    return {"count": len(readings)}, 201


@bp.get("/devices/<device_uuid>/readings/", strict_slashes=False)
@access(DEVICE_READ)
def list_readings(device_uuid):
    """Stream a device's readings as a JSON array ordered by date_created."""
    device_uuid = load_device_uuid(device_uuid)
    query = load_filters(_listing_schema)
    partitions = stream_readings(device_uuid, current_app.config["STREAM_CHUNK_ROWS"], **query)
    next(partitions)  # run the queries now, so that a failure is still a JSON error
    return Response(_json_array(partitions), mimetype="application/json")


def _json_array(partitions):
    """Yield a JSON array of readings chunk by chunk, so memory stays flat."""
    separator = "["
    for rows in partitions:
        chunk = json.dumps([dict(zip(READING_KEYS, row)) for row in rows], separators=(",", ":"))
        yield separator + chunk[1:-1]
        separator = ","
    yield "[]\n" if separator == "[" else "]\n"


@bp.get("/devices/<device_uuid>/readings/<metric>/", strict_slashes=False)
@access(DEVICE_READ)
def get_metric(device_uuid, metric):
    """Return one statistic over a device's readings of one type."""
    if metric not in metrics.METRICS:
        abort(404, f"There is no metric '{metric}'; use one of {', '.join(metrics.METRICS)}.")
    device_uuid = load_device_uuid(device_uuid)
    filters = load_filters(_metric_schema)
    body = metrics.compute(metric, {"device_uuid": device_uuid, **filters})
    if body is None:
        abort(404, f"No {filters['type']} readings match; widen the time range or post readings first.")
    return jsonify(body)


@bp.get("/health", strict_slashes=False)
@access(PUBLIC)
def health():
    """Report whether the readings table can be queried."""
    check_readings_table()
    return {"status": "ok"}


def no_sniffing(response):
    """Keep browsers from reading any response as another type than the one it declares."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


BLUEPRINTS = (bp, aggregates.bp, openapi.bp, tokens_cli.bp, dashboard.bp)


def create_app(test_config=None):
    """Create the application, choosing its configuration from the environment."""
    app = Flask(__name__, static_folder=None)  # the dashboard serves its own files, under /dashboard/
    app.response_class = BufferedResponse
    app.config.from_object(select_config())
    app.config.update(environment_overrides())
    if test_config:
        app.config.update(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_uri(app.config)
    if app.config["CANARY_ROLE"] not in ROLES:
        raise ValueError(f"CANARY_ROLE must be one of {', '.join(ROLES)}")
    if app.config["AUTH"] not in auth.MODES:
        raise ValueError(f"AUTH (environment CANARY_AUTH) must be one of {', '.join(auth.MODES)}, "
                         f"not {app.config['AUTH']!r}")

    app.url_map.merge_slashes = False  # RequestGuards routes `//` as `/`; Werkzeug would redirect
    app.wsgi_app = RequestGuards(app.wsgi_app, max(app.config["MAX_CONTENT_LENGTH"],
                                                   app.config["MAX_BATCH_CONTENT_LENGTH"]))
    app.after_request(no_sniffing)
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        create_schema()

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if ROLES[app.config["CANARY_ROLE"]] is not None:
        app.before_request(refuse_other_role)
    auth.init_app(app)  # after the role check: a route this server does not serve is a 404 to anyone
    register_error_handlers(app)
    app.extensions["openapi"] = openapi.build_document(app)
    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
