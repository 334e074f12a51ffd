"""Responses: whole bodies handed to the server in one piece, and the headers that confine pages."""
from flask import Response


class BufferedResponse(Response):
    """A response whose body, when already whole in memory, goes to the server as one bytes object."""

    def get_app_iter(self, environ):
        """Return a list of one bytes object for a buffered body; a streamed body as Flask streams it.

        granian writes a list in one write, and an iterator piece by piece.
        """
        app_iter = super().get_app_iter(environ)
        if not self.is_sequence or self.direct_passthrough:
            return app_iter
        try:
            return [b"".join(app_iter)]
        finally:
            app_iter.close()


def no_sniffing(response):
    """Keep browsers from reading any response as another type than the one it declares."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def confine_page(response, policy):
    """Give an HTML page a Content-Security-Policy, refuse every frame, and send no Referer from it."""
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
