"""WSGI middleware in front of Flask: one path for every run of slashes, and no request body left unread."""
import io
import re

_SLASHES = re.compile(r"//+")
BODY = "canary.body"  # a small body, read whole before the app: request_body() takes it from here
_DRAIN_CHUNK = 64 * 1024
_READ_AT_ONCE = 64 * 1024  # bodies up to this size are read whole before the app: one read, in C


class CountedInput:
    """A request body stream that counts the bytes the application read from it."""

    __slots__ = ("consumed", "stream")

    def __init__(self, stream):
        self.stream, self.consumed = stream, 0

    def read(self, *args):
        data = self.stream.read(*args)
        self.consumed += len(data)
        return data

    def readline(self, *args):
        line = self.stream.readline(*args)
        self.consumed += len(line)
        return line

    def readlines(self, *args):
        lines = self.stream.readlines(*args)
        self.consumed += sum(map(len, lines))
        return lines

    def __iter__(self):
        return iter(self.readline, b"")

    def drain(self, length):
        """Read and drop what is left of a body of `length` bytes; stop early if the client has gone."""
        try:
            while self.consumed < length:
                if not self.read(min(_DRAIN_CHUNK, length - self.consumed)):
                    return
        except Exception:  # whatever the server raises for a broken connection: the answer stands
            return


class RequestGuards:
    """Route `//` as `/` instead of redirecting, and read whatever body the application refused unread.

    A small body is read whole before the application runs; a larger one is counted as the
    application reads it, and the rest read afterwards.

    A redirect would be built from the Host header, which the client chooses. A body left unread
    makes the server close the connection while nginx is still writing it, and nginx would count
    the refusal of one client's request as a failure of the worker.
    """

    def __init__(self, wsgi_app, drain_limit):
        self.wsgi_app, self.drain_limit = wsgi_app, drain_limit
        self.read_at_once = min(_READ_AT_ONCE, drain_limit)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = _SLASHES.sub("/", path)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= 0:
            return self.wsgi_app(environ, start_response)
        if length <= self.read_at_once:  # a reading: nothing is left to drain, and reading it costs no Python call
            try:
                data = environ["wsgi.input"].read(length)
            except Exception:  # the client went away: Flask finds the body short of its length and answers 400
                data = b""
            environ["wsgi.input"] = io.BytesIO(data)
            if len(data) == length:
                environ[BODY] = data
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"] = CountedInput(environ["wsgi.input"])
        response = self.wsgi_app(environ, start_response)
        if length <= self.drain_limit:  # nginx forwards nothing larger; without it, the server copes
            body.drain(length)
        return response
