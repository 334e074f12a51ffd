"""The Flask application class, with one cost of each request taken off its hot path."""
from flask import Flask

_MAX_CHECKED = 4096  # functions made per request (after_this_request's, say) are checked each time instead


class CanaryFlask(Flask):
    """Flask, which checks each view and hook for `async def` once instead of on every call.

    Flask asks inspect before each call, about a microsecond each time, and a request calls five.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synchronous = {}

    def ensure_sync(self, func):
        """Return func as a plain callable, from the check made the first time it was asked for."""
        synchronous = self._synchronous.get(func)
        if synchronous is None:
            synchronous = super().ensure_sync(func)
            if len(self._synchronous) < _MAX_CHECKED:
                self._synchronous[func] = synchronous
        return synchronous
