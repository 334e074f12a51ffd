"""The write routes: one reading or a batch for the device in the URL, and a batch naming its devices."""
from flask import Blueprint, current_app, request

from canary.access.rules import DEVICE_WRITE, GATEWAY_WRITE, access
from canary.access.tokens import check_batch_devices
from canary.ingest import idempotency
from canary.ingest.loading import load_device_post, load_gateway_post
from canary.ingest.store import insert_reading, insert_readings
from canary.openapi.describe import WRITE_ERRORS, batch_of, documented
from canary.web.json import encode
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
    with idempotency.keyed(device_uuid) as key:
        reading, readings = load_device_post(device_uuid)
        if readings is not None:
            return batch_stored(readings, "device_batch", key)
        reading["device_uuid"] = device_uuid
        body = encode({name: reading[name] for name in READING_KEYS}) + b"\n"
        insert_reading(reading, key, body)
        return created(body)


def batch_stored(readings, via, key):
    """Store a batch with its key's response, and answer 201 with its count."""
    body = encode({"count": len(readings)}) + b"\n"
    insert_readings(readings, via, key, body)
    return created(body)


def created(body):
    """Answer 201 with a JSON body built directly: on the hot path, jsonify costs a few µs more."""
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
    with idempotency.keyed() as key:
        readings = load_gateway_post()
        check_batch_devices(readings)
        return batch_stored(readings, "gateway_batch", key)
