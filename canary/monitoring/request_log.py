"""The request log: one JSON line per request, written whole with one write() so that the lines of
every worker process, and nginx's for the requests it answers itself, never interleave."""
import datetime
import os
import threading
import time

import msgspec

_encode = msgspec.json.Encoder().encode
REOPEN_CHECK_SECONDS = 1.0


class RequestLine(msgspec.Struct):
    """One request's log line, its fields in the order they are written (docs/operations.md)."""

    time: str
    request_id: str
    method: str
    path: str
    route: str | None
    device: str | None
    status: int
    duration: float
    bytes_in: int
    bytes_out: int
    token_id: int | None
    token_kind: str | None
    source: str = "app"


class LineLog:
    """Lines appended to stderr ("-") or to a file, which is opened again once logrotate has moved it."""

    def __init__(self, destination):
        self.path = None if destination == "-" else os.path.abspath(destination)
        self.fd, self.identity, self.checked = 2, None, 0.0
        self.lock = threading.Lock()
        if self.path is not None:
            self._open()

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        stat = os.fstat(fd)
        self.fd, self.identity = fd, (stat.st_dev, stat.st_ino)

    def _reopen_if_moved(self, now):
        with self.lock:
            if now - self.checked < REOPEN_CHECK_SECONDS:
                return
            self.checked = now
            try:
                stat = os.stat(self.path)
                moved = (stat.st_dev, stat.st_ino) != self.identity
            except FileNotFoundError:
                moved = True
            if moved:
                old = self.fd
                self._open()
                os.close(old)

    def write(self, record):
        """Append one record (a RequestLine, or anything else msgspec encodes) as a JSON line."""
        if self.path is not None:
            now = time.monotonic()
            if now - self.checked >= REOPEN_CHECK_SECONDS:
                self._reopen_if_moved(now)
        try:
            os.write(self.fd, _encode(record) + b"\n")
        except OSError:
            pass  # a full disk or a closed stderr must not fail the request


_formatted_second = (None, "")  # the last whole second formatted, and its text up to the milliseconds


def utc_time(epoch_seconds):
    """Format epoch seconds as ISO 8601 UTC with milliseconds: 2026-12-06T20:30:00.123Z."""
    global _formatted_second
    whole = int(epoch_seconds)
    microseconds = round((epoch_seconds - whole) * 1_000_000)  # rounded as datetime rounds it
    if microseconds >= 1_000_000:
        whole, microseconds = whole + 1, microseconds - 1_000_000
    second, text = _formatted_second  # one read, so that another thread's update never mixes in
    if second != whole:  # formatting a date costs microseconds, and a busy worker logs many lines a second
        text = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _formatted_second = (whole, text)
    return f"{text}{microseconds // 1000:03d}Z"
