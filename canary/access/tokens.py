"""Bearer tokens: how they are made and stored, and the check of each request's token against its route's rule."""
import functools
import hashlib
import re
import secrets
import time
from typing import NamedTuple

import sqlalchemy as sa
from flask import abort, g, request

from canary.access.rules import (
    DEVICE_READ,
    DEVICE_WRITE,
    FLEET_READ,
    GATEWAY_WRITE,
    METRICS_READ,
    PUBLIC,
    permits,
    rule_of,
)
from canary.monitoring.instruments import TOKEN_CHECKS
from canary.monitoring.observer import TOKEN
from canary.web.errors import error_response
from models import Token, db

MODES = ("tokens", "open")
TOKEN_PREFIX = "cnry_"  # makes a leaked token recognisable in logs and to secret scanners
TOKEN_BYTES = 32  # 256 bits from the operating system's CSPRNG
# RFC 6750 section 2.1 credentials; the scheme is case-insensitive (RFC 9110 section 11.1).
_BEARER = re.compile(r"bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)
_CACHE_MAX_ENTRIES = 100_000
_ACCEPTED = TOKEN_CHECKS.labels("accepted")

MISSING = "This route needs a token; send it as 'Authorization: Bearer <token>'."
MALFORMED = "The Authorization header is not a bearer token; send 'Authorization: Bearer <token>'."
INVALID = "The token is not valid; check it, or ask for a new one."  # unknown and revoked alike
FORBIDDEN = {
    DEVICE_WRITE: "This token may not post readings for this device; use its device token or an ingest token.",
    GATEWAY_WRITE: "This route needs an ingest token, or a device token posting its own readings.",
    DEVICE_READ: "This token may not read this device's readings; use its device token or a read token.",
    FLEET_READ: "This route needs a read token.",
    METRICS_READ: "This route needs a metrics token.",
}
NOT_GRANTED = "No token may call this route."
OTHER_DEVICE = "A device token may only post readings of its own device."


class Grant(NamedTuple):
    """What a valid token allows: its kind, and for a device token its device; and which token it is."""

    kind: str
    device_uuid: str | None
    token_id: int | None = None


def new_token():
    """Return a new random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token):
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """What this process last read about each token it was shown, trusted for `lifetime` seconds.

    Unknown and revoked tokens are cached too, as None, so a misconfigured device retrying with a
    bad token costs no more queries than a good one.
    """

    def __init__(self, lifetime):
        self.lifetime = lifetime
        self.entries = {}  # digest -> (monotonic expiry, Grant or None)

    def grant(self, digest):
        """Return the Grant of a valid token's digest, or None for an unknown or revoked one."""
        now = time.monotonic()
        entry = self.entries.get(digest)
        if entry is None or entry[0] <= now:
            entry = (now + self.lifetime, fetch_grant(digest))
            if len(self.entries) >= _CACHE_MAX_ENTRIES:
                live = {key: value for key, value in self.entries.items() if value[0] > now}
                self.entries = live if len(live) < _CACHE_MAX_ENTRIES else {}
            self.entries[digest] = entry
        return entry[1]


def fetch_grant(digest):
    """Read a token's Grant from the database; None when no unrevoked token has that digest."""
    statement = sa.select(Token.kind, Token.device_uuid, Token.id).where(Token.digest == digest,
                                                                      Token.revoked_at.is_(None))
    with db.engine.connect() as connection:  # a database failure is a 503, as on any route
        row = connection.execute(statement).first()
    return None if row is None else Grant(*row)


def init_app(app):
    """Check each request's token in tokens mode; in open mode say so once, at start-up."""
    if app.config["AUTH"] not in MODES:
        raise ValueError(f"AUTH (environment CANARY_AUTH) must be one of {', '.join(MODES)}, "
                         f"not {app.config['AUTH']!r}")
    if app.config["AUTH"] == "open":
        app.logger.warning("AUTH is open: any client may call every route; set CANARY_AUTH=tokens to require tokens")
        return
    cache = app.extensions["canary_tokens"] = TokenCache(app.config["TOKEN_CACHE_SECONDS"])
    app.before_request(functools.partial(check_token, app, cache))


def check_token(app, cache):
    """Refuse a request unless its bearer token grants the access rule of the view it routes to."""
    # Each context-local lookup costs about a microsecond, so this hot path makes one.
    current = request._get_current_object()
    endpoint = current.endpoint
    if endpoint is None:
        return  # no route matched: the 404 or 405 follows
    rule = rule_of(app, endpoint)
    if rule == PUBLIC:
        return
    token = bearer_token(current.environ.get("HTTP_AUTHORIZATION"))
    # Text that cannot be one of our tokens is refused without a query.
    grant = cache.grant(token_digest(token)) if token.startswith(TOKEN_PREFIX) else None
    if grant is None:
        refuse(401, INVALID, "invalid_token", outcome="invalid")
    current.environ[TOKEN] = (grant.token_id, grant.kind)  # for the request log
    if not permits(grant, rule, current.view_args):
        refuse(403, FORBIDDEN.get(rule, NOT_GRANTED), "insufficient_scope", outcome="forbidden")
    _ACCEPTED.inc()
    g.grant = grant  # for check_batch_devices and the idempotency keys' scope

def bearer_token(header):
    """Return the token of an Authorization header, refusing a missing or malformed one."""
    if header is None:
        refuse(401, MISSING, outcome="missing")
    match = _BEARER.fullmatch(header)
    if match is None:
        refuse(401, MALFORMED, "invalid_request", outcome="malformed")
    return match[1]


def check_batch_devices(readings):
    """Refuse a gateway batch sent with a device token if it holds readings of any other device."""
    grant = g.get("grant")
    if grant is None or grant.kind != "device":
        return
    offending = {index: [OTHER_DEVICE] for index, reading in enumerate(readings)
                 if reading["device_uuid"] != grant.device_uuid}
    if offending:
        refuse(403, FORBIDDEN[GATEWAY_WRITE], "insufficient_scope", errors=offending, outcome="forbidden")


def refuse(code, message, error=None, errors=None, outcome=None):
    """Abort with the JSON error and an RFC 6750 challenge, with its error code where one applies."""
    if outcome is not None:
        TOKEN_CHECKS.labels(outcome).inc()
    challenge = 'Bearer realm="canary"' + (f', error="{error}"' if error else "")
    abort(error_response(code, message, errors=errors, headers={"WWW-Authenticate": challenge}))
