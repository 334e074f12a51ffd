"""A bare Flask app that echoes the JSON it is posted: the ceiling for one-reading-per-request ingest."""
from flask import Flask, request

app = Flask(__name__)


@app.post("/devices/<device_uuid>/readings/")
def echo(device_uuid):
    """Return the posted JSON body unchanged, as the readings API would acknowledge it."""
    return request.get_json(force=True), 201


@app.get("/health")
def health():
    """Answer the benchmark's readiness probe."""
    return {"status": "ok"}
