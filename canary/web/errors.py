"""The one JSON error shape, and the handlers that turn every failure into it."""
import logging

from flask import current_app, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from canary.database import is_busy, is_missing_table, is_storage_full, is_unavailable
from canary.monitoring.instruments import UNAVAILABLE
from canary.monitoring.observer import request_id

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
# An error body names what is wrong, not every echo of a hostile request: these bound its size.
MAX_LISTED_KEYS = 100  # fields, or batch indexes, of one level of `errors`
MAX_NESTED_KEYS = 5  # fields of one batch item
MAX_KEY_CHARACTERS = 64
MAX_MESSAGES = 5

DEFAULT_MESSAGES = {
    400: "The request is malformed; check its syntax.",
    404: "Nothing is served at this URL; check the path.",
    413: "The request body is too large; send less data per request.",
    422: "The request is invalid; see 'errors' for what to fix.",
    500: "The server failed to handle the request; try again later.",
}


def error_response(code, message, errors=None, headers=None):
    """Build the JSON error every failure returns."""
    body = {"code": code, "status": HTTP_STATUS_CODES.get(code, "Error"), "message": message,
            "request_id": request_id()}
    if errors is not None:
        body["errors"] = bounded_errors(errors, MAX_LISTED_KEYS)
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


def invalid(field, message):
    """Return a 422 error for one field whose message says what to do, to raise."""
    return ValidationError({field: [message]}, summary=message)


def handle_validation_error(error):
    """Return a schema violation as a 422 with the errors of each field."""
    errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    return error_response(422, error.kwargs.get("summary", DEFAULT_MESSAGES[422]), errors=errors)


def bounded_errors(errors, max_keys):
    """Return errors with text keys, at most max_keys of them a level, long keys cut and few messages each.

    Unknown fields are keyed by their names, which the client chose: without bounds, a body of
    long or many unknown keys would be echoed back whole, and more.
    """
    bounded = {}
    for key, value in errors.items():
        if len(bounded) == max_keys:
            more = len(errors) - max_keys
            bounded.setdefault("_schema", []).append(f"... and {more:,} more not listed.")
            break
        key = str(key)
        if len(key) > MAX_KEY_CHARACTERS:
            key = key[:MAX_KEY_CHARACTERS] + "..."
        if isinstance(value, dict):
            bounded[key] = bounded_errors(value, MAX_NESTED_KEYS)
        elif isinstance(value, list):
            bounded[key] = [str(message)[:200] for message in value[:MAX_MESSAGES]]
        else:
            bounded[key] = value
    return bounded


def handle_database_error(error):
    """Answer 503 with Retry-After when the database cannot serve; a lost table is created by the next request."""
    if is_missing_table(error):
        log.warning("A table is missing; the next request creates the schema again.")
        UNAVAILABLE.labels("missing_table").inc()
        current_app.extensions["canary_schema"].lost()
        message = "The database had lost its tables; they are being created again, so retry now."
        return error_response(503, message, headers={"Retry-After": "1"})
    if not is_unavailable(error):
        log.error("Database error", exc_info=error)
        return error_response(500, DEFAULT_MESSAGES[500])
    log.warning("Database unavailable: %s", error)
    if is_storage_full(error):
        UNAVAILABLE.labels("full").inc()
        message = "The database's storage is full, so nothing was stored; retry once space is freed."
    else:
        UNAVAILABLE.labels("busy" if is_busy(error) else "unavailable").inc()
        message = "The database is unavailable or busy, so nothing was done; retry shortly."
    return error_response(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def register_error_handlers(app):
    """Make every error the application raises answer in the JSON error shape."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(PoolTimeoutError, handle_database_error)
