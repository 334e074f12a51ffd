"""The Canary readings API: the application factory, its routes and its JSON errors."""
import json

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

import metrics
from configmodule import database_uri, environment_overrides, select_config
from models import READING_KEYS, configure_engine, db, ping, stream_readings
from schemas import (
    DeviceReadingSchema,
    ListingQuerySchema,
    MetricQuerySchema,
    ReadingSchema,
    load_device_uuid,
)
from writes import create_schema, insert_reading, insert_readings

bp = Blueprint("readings", __name__)

ROLES = {"all": None, "ingest": "query", "query": "ingest"}  # role -> the kind of route it refuses
WRITE_ENDPOINTS = {"readings.create_device_readings", "readings.create_readings"}
READ_ENDPOINTS = {"readings.list_readings", "readings.get_metric"}

_reading_schema = ReadingSchema()
_device_batch_schema = ReadingSchema(many=True)
_gateway_batch_schema = DeviceReadingSchema(many=True)
_listing_schema = ListingQuerySchema()
_metric_schema = MetricQuerySchema()


NO_BODY = object()


def parse_json_body(required):
    """Return the request body parsed as JSON whatever its Content-Type, or NO_BODY if empty."""
    data = request.get_data(cache=True)
    # A chunked body has no Content-Length to check up front: Werkzeug stops reading at the limit.
    if request.content_length is None and (limit := request.max_content_length):
        if len(data) >= limit and request.input_stream.read(1):
            abort(413)
    if not data.strip():
        if required:
            abort(400, "The request body is empty; send a JSON object.")
        return NO_BODY
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        abort(400, f"The request body is not valid JSON ({error}).")


def load_filters(schema):
    """Return filters from the query string and a JSON-object GET body; the query string wins."""
    body = parse_json_body(required=False)
    if body is NO_BODY:
        body = {}
    elif not isinstance(body, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object of filters."]})
    return schema.load({**body, **request.args.to_dict()})


def load_batch(schema, readings):
    """Return a validated batch of readings, refusing empty and oversized ones."""
    if not readings:
        raise ValidationError({"_schema": ["A batch must hold at least one reading."]})
    if len(readings) > current_app.config["MAX_BATCH"]:
        abort(413, f"A batch holds at most {current_app.config['MAX_BATCH']} readings; split it.")
    return schema.load(readings)


def refuse_other_role():
    """Answer 404 for routes that this server's role leaves to other servers."""
    refused = ROLES[current_app.config["CANARY_ROLE"]]
    if refused == "ingest" and request.endpoint in WRITE_ENDPOINTS:
        abort(404, "This server only answers queries; send readings to an ingest server.")
    if refused == "query" and request.endpoint in READ_ENDPOINTS:
        abort(404, "This server only takes readings; send queries to a query server.")


@bp.post("/devices/<device_uuid>/readings/", strict_slashes=False)
def create_device_readings(device_uuid):
    """Store one reading (a JSON object) or a batch (a JSON array) for a device."""
    device_uuid = load_device_uuid(device_uuid)
    body = parse_json_body(required=True)
    if isinstance(body, list):
        readings = load_batch(_device_batch_schema, body)
        insert_readings([{**reading, "device_uuid": device_uuid} for reading in readings])
        return {"count": len(readings)}, 201
    reading = {**_reading_schema.load(body), "device_uuid": device_uuid}
    insert_reading(reading)
    return {key: reading[key] for key in READING_KEYS}, 201


@bp.post("/readings/", strict_slashes=False)
def create_readings():
    """Store a batch of readings for many devices in one transaction."""
    request.max_content_length = current_app.config["MAX_BATCH_CONTENT_LENGTH"]
    body = parse_json_body(required=True)
    if not isinstance(body, list):
        raise ValidationError({"_schema": ["The request body must be a JSON array of readings."]})
    readings = load_batch(_gateway_batch_schema, body)
    insert_readings(readings)
    return {"count": len(readings)}, 201


@bp.get("/devices/<device_uuid>/readings/", strict_slashes=False)
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


@bp.get("/health")
def health():
    """Report whether the service can reach its database."""
    try:
        ping()
    except SQLAlchemyError:
        abort(503, "The database is unreachable; check DATABASE_URL and the database server.")
    return {"status": "ok"}


DEFAULT_MESSAGES = {
    400: "The request is malformed; check its syntax.",
    404: "Nothing is served at this URL; check the path.",
    413: "The request body is too large; send less data per request.",
    422: "The request is invalid; see 'errors' for what to fix.",
    500: "The server failed to handle the request; try again later.",
}


def error_response(code, message, errors=None, headers=None):
    """Build the JSON error every failure returns."""
    body = {"code": code, "status": HTTP_STATUS_CODES.get(code, "Error"), "message": message}
    if errors is not None:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = code
    response.headers.extend(headers or {})
    return response


def handle_http_exception(error):
    """Return any HTTP error as JSON."""
    message = error.description
    if message == type(error).description:
        message = DEFAULT_MESSAGES.get(error.code, message)
    headers = {}
    if error.code == 405:
        allowed = sorted(set(error.valid_methods or ()) - {"HEAD", "OPTIONS"})
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}."
        headers["Allow"] = ", ".join(error.valid_methods or ())
    if error.code == 413 and message == DEFAULT_MESSAGES[413]:
        message = f"The request body is over {request.max_content_length} bytes; send less data per request."
    return error_response(error.code, message, headers=headers)


def handle_validation_error(error):
    """Return a schema violation as a 422 with the errors of each field."""
    errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    return error_response(422, DEFAULT_MESSAGES[422], errors=errors)


def create_app(test_config=None):
    """Create the application, choosing its configuration from the environment."""
    app = Flask(__name__)
    app.config.from_object(select_config())
    app.config.update(environment_overrides())
    if test_config:
        app.config.update(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_uri(app.config)
    if app.config["CANARY_ROLE"] not in ROLES:
        raise ValueError(f"CANARY_ROLE must be one of {', '.join(ROLES)}")

    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        create_schema()

    app.register_blueprint(bp)
    if ROLES[app.config["CANARY_ROLE"]] is not None:
        app.before_request(refuse_other_role)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationError, handle_validation_error)
    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
