"""Each request's id and outcome: the X-Request-ID header, the request log line and the request metrics.

A WSGI middleware outside Flask, so that it times and counts every request, whatever answers it.
A buffered answer is recorded as soon as it is ready; a streamed one when the server closes it.
"""
import os
import re
import time

from flask import request

from canary.monitoring import instruments
from canary.monitoring.request_log import LineLog, RequestLine, utc_time

# An id a client (or nginx) chose is kept if it is this tame; otherwise the request gets a new one.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
REQUEST_ID = "canary.request_id"
ROUTE, DEVICE, TOKEN = "canary.route", "canary.device", "canary.token"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
_MAX_LOGGED_DEVICE = 100


def request_id():
    """Return the current request's id."""
    return request.environ.get(REQUEST_ID)


def note_route():
    """Note the request's route template and device for its log line and metrics, as routing found them."""
    current = request._get_current_object()  # one context-local lookup instead of three, on every request
    environ, rule = current.environ, current.url_rule
    environ[ROUTE] = None if rule is None else rule.rule
    device = (current.view_args or {}).get("device_uuid")
    environ[DEVICE] = None if device is None else device[:_MAX_LOGGED_DEVICE]


class RequestObserver:
    """Give each request an id, then log and count it once its answer is complete."""

    def __init__(self, wsgi_app, log=None, metrics=True):
        self.wsgi_app, self.log, self.metrics = wsgi_app, log, metrics
        self.counters, self.timers = {}, {}  # labelled children, kept: labels() costs a lock each time

    def __call__(self, environ, start_response):
        began, arrived = time.perf_counter(), time.time()
        chosen = environ.get("HTTP_X_REQUEST_ID")
        rid = environ[REQUEST_ID] = chosen if chosen and CLIENT_REQUEST_ID.match(chosen) else os.urandom(16).hex()
        statuses = []

        def observed_start_response(status, headers, exc_info=None):
            statuses.append(status)
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        app_iter = self.wsgi_app(environ, observed_start_response)
        if isinstance(app_iter, list):
            self.record(environ, statuses, arrived, began, sum(map(len, app_iter)))
            return app_iter
        return ObservedBody(app_iter, lambda sent: self.record(environ, statuses, arrived, began, sent))

    def record(self, environ, statuses, arrived, began, sent):
        """Count and log one finished request."""
        seconds = time.perf_counter() - began
        status = int(statuses[-1][:3]) if statuses else 500
        route, method = environ.get(ROUTE), environ.get("REQUEST_METHOD", "")
        if self.metrics:
            key = (route or "unmatched", method if method in METHODS else "other", status)
            counter = self.counters.get(key)
            if counter is None:
                counter = self.counters[key] = instruments.REQUESTS.labels(*key)
            counter.inc()
            timer = self.timers.get(key[0])
            if timer is None:
                timer = self.timers[key[0]] = instruments.DURATION.labels(key[0])
            timer.observe(seconds)
        if self.log is not None:
            token_id, token_kind = environ.get(TOKEN) or (None, None)
            self.log.write(RequestLine(
                utc_time(arrived), environ[REQUEST_ID], method[:16], environ.get("PATH_INFO", "")[:200], route,
                environ.get(DEVICE), status, round(seconds, 6), _content_length(environ), sent, token_id, token_kind))


class ObservedBody:
    """A streamed body that counts what it yields and reports the total when the server closes it."""

    def __init__(self, app_iter, report):
        self.app_iter, self.report, self.sent = app_iter, report, 0

    def __iter__(self):
        for chunk in self.app_iter:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            if hasattr(self.app_iter, "close"):
                self.app_iter.close()
        finally:
            self.report(self.sent)


def _content_length(environ):
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def init_app(app):
    """Observe every request of the app: its id always, its log line and metrics as the settings say."""
    destination = app.config["REQUEST_LOG"]
    log = LineLog(destination) if destination else None
    app.wsgi_app = RequestObserver(app.wsgi_app, log, app.config["METRICS"])
    app.before_request(note_route)
