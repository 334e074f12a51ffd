"""The request log: one JSON line per request, written whole, a few at a time, so that the lines of
every worker process, and nginx's for the requests it answers itself, never interleave."""
import datetime
import os
import select
import threading
import time

import msgspec

from canary.monitoring import deferred

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
    """Lines appended to stderr ("-") or to a file, which is opened again once logrotate has moved it.

    Lines wait in memory for the next deferred flush (canary/monitoring/deferred.py), or until they
    fill one write of PIPE_BUF bytes, which no other process's write can interleave with, even on a pipe.
    """

    def __init__(self, destination):
        self.path = None if destination == "-" else os.path.abspath(destination)
        self.fd, self.identity, self.checked = 2, None, 0.0
        self.lock = threading.Lock()  # held while lines are added or written, which keeps them in order
        self.pending, self.pending_bytes = [], 0
        if self.path is not None:
            self._open()
        deferred.every_flush(self.flush)

    def _open(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        stat = os.fstat(fd)
        self.fd, self.identity = fd, (stat.st_dev, stat.st_ino)

    def _reopen_if_moved(self):
        now = time.monotonic()
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
        """Add one record (a RequestLine, or anything else msgspec encodes) as a JSON line."""
        line = _encode(record) + b"\n"
        with self.lock:
            if self.pending_bytes + len(line) > select.PIPE_BUF:
                self._write_pending()
            self.pending.append(line)
            self.pending_bytes += len(line)
        if not deferred.running:
            deferred.start()

    def flush(self):
        """Write the lines waiting in memory."""
        with self.lock:
            self._write_pending()

    def _write_pending(self):
        if not self.pending:
            return
        chunk, self.pending, self.pending_bytes = b"".join(self.pending), [], 0
        try:
            if self.path is not None:
                self._reopen_if_moved()
            os.write(self.fd, chunk)
        except OSError:
            pass  # a full disk or a closed stderr must not fail a request


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
