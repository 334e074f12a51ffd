"""The write routes: one reading or a batch for the device in the URL, and a batch naming its devices."""
from flask import Blueprint, current_app, request
from marshmallow import ValidationError

from canary.access.rules import DEVICE_WRITE, GATEWAY_WRITE, access
from canary.access.tokens import check_batch_devices
from canary.ingest.loading import app_checkers, load_batch, load_valid_batch, load_valid_reading
from canary.ingest.store import insert_reading, insert_readings
from canary.openapi.describe import WRITE_ERRORS, batch_of, documented
from canary.web.json import encode
from canary.web.requests import parse_json_body
from canary.web.responses import BufferedResponse
from models import READING_KEYS
from schemas import CountSchema, DeviceReadingSchema, ReadingSchema, StoredReadingSchema, load_device_uuid

bp = Blueprint("ingest", __name__)

@bp.post("/devices/<device_uuid>/readings/", strict_slashes=False)
@access(DEVICE_WRITE)
@documented(
    body=lambda config: {"oneOf": [ReadingSchema, batch_of(ReadingSchema, config)]}, errors=WRITE_ERRORS,
    responses={201: ("The stored reading, or how many readings a batch stored.",
                     {"oneOf": [StoredReadingSchema, CountSchema]})},
    description="A batch is all or nothing: one invalid reading refuses the whole batch, and the 422 "
                "names the bad readings by their index.")
def create_device_readings(device_uuid):
    """Store one reading (a JSON object) or a batch (a JSON array) for a device."""
    device_uuid = load_device_uuid(device_uuid)
    reading = load_valid_reading()
    if reading is None:
        checkers = app_checkers()
        readings = load_valid_batch(checkers.decode_device_batch, device_uuid)
        if readings is None:
            body = parse_json_body(required=True)
            if not isinstance(body, list):
                reading = checkers.reading_schema.load(body)
            else:
                readings = [{**reading, "device_uuid": device_uuid}
                            for reading in load_batch(checkers.reading_schema, checkers.valid_reading, body)]
        if readings is not None:
            insert_readings(readings)
            return {"count": len(readings)}, 201
    reading["device_uuid"] = device_uuid
    insert_reading(reading)
    return reading_created(reading)


def reading_created(reading):
    """Answer 201 with the stored reading, built directly: on the hot path, jsonify costs a few µs more."""
    body = encode({key: reading[key] for key in READING_KEYS}) + b"\n"
    return BufferedResponse(body, status=201, mimetype="application/json")


@bp.post("/readings/", strict_slashes=False)
@access(GATEWAY_WRITE)
@documented(
    body=lambda config: batch_of(DeviceReadingSchema, config), errors=WRITE_ERRORS,
    responses={201: ("How many readings were stored.", CountSchema)},
    description="Each reading names its own device_uuid. All or nothing, like a device batch.")
def create_readings():
    """Store a batch of readings for many devices in one transaction."""
    request.max_content_length = current_app.config["MAX_BATCH_CONTENT_LENGTH"]
    checkers = app_checkers()
    readings = load_valid_batch(checkers.decode_gateway_batch)
    if readings is None:
        body = parse_json_body(required=True)
        if not isinstance(body, list):
            raise ValidationError({"_schema": ["The request body must be a JSON array of readings."]})
        readings = load_batch(checkers.device_reading_schema, checkers.valid_device_reading, body)
    check_batch_devices(readings)
    insert_readings(readings)
    return {"count": len(readings)}, 201
