"""The one check that an answer is an error in the API's JSON shape, for the test client and for raw calls; and
the one wait for a condition."""
import time

from werkzeug.http import HTTP_STATUS_CODES


def wait_until(condition, timeout=30.0, what="the condition"):
    """Poll a condition until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.05)


def assert_error(answer, code, with_errors=None):
    """Check an error answer: the status, JSON, code, reason phrase and message, and `errors` where it belongs.

    `answer` is a Flask test response, or a (status, parsed body, headers) tuple from tests/serving.call.
    Its request_id is its X-Request-ID header's. `errors` belongs to a 422, and to whatever other answer
    with_errors=True says carries it. Return the body.
    """
    if isinstance(answer, tuple):
        status, body, headers = answer
        mimetype = headers.get("Content-Type", "").split(";")[0]
    else:
        status, body, mimetype, headers = answer.status_code, answer.get_json(), answer.mimetype, answer.headers
    assert status == code, (status, body)
    assert mimetype == "application/json"
    assert body["code"] == code and body["status"] == HTTP_STATUS_CODES[code]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["request_id"], str) and body["request_id"] == headers.get("X-Request-ID")
    if code == 422 if with_errors is None else with_errors:
        assert set(body) == {"code", "status", "message", "request_id", "errors"}
        assert isinstance(body["errors"], dict) and body["errors"]
    else:
        assert set(body) == {"code", "status", "message", "request_id"}
    return body
