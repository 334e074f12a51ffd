"""WSGI middleware in front of Flask: one path for every run of slashes, and no request body left unread."""
import re

_SLASHES = re.compile(r"//+")
_DRAIN_CHUNK = 64 * 1024


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

    A redirect would be built from the Host header, which the client chooses. A body left unread
    makes the server close the connection while nginx is still writing it, and nginx would count
    the refusal of one client's request as a failure of the worker.
    """

    def __init__(self, wsgi_app, drain_limit):
        self.wsgi_app, self.drain_limit = wsgi_app, drain_limit

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
        body = environ["wsgi.input"] = CountedInput(environ["wsgi.input"])
        response = self.wsgi_app(environ, start_response)
        if length <= self.drain_limit:  # nginx forwards nothing larger; without it, the server copes
            body.drain(length)
        return response
