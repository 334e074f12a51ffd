"""The one JSON error shape, and the handlers that turn every failure into it."""
from flask import jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

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


def invalid(field, message):
    """Return a 422 error for one field whose message says what to do, to raise."""
    return ValidationError({field: [message]}, summary=message)


def handle_validation_error(error):
    """Return a schema violation as a 422 with the errors of each field."""
    errors = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    return error_response(422, error.kwargs.get("summary", DEFAULT_MESSAGES[422]), errors=errors)


def register_error_handlers(app):
    """Make every error the application raises answer in the JSON error shape."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationError, handle_validation_error)
