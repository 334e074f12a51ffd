"""Idempotency-Key on the POST routes (the IETF httpapi draft): a retry gets the first answer and stores nothing.

A request with a key first claims it, in a short transaction of its own: a row with the request's
hash and a lease, or, for a key already there, the answer to a retry (the stored response again;
a 422 for another body; a 409 while the first request is still in flight). The readings are then
stored in the transaction that also writes the response into the key's row, if the claim is still
this request's, so a key has its response exactly when its readings are stored, across crashes
too. A claim whose request died is taken over once its lease has run out. Keys are scoped to the
token that sent them (in open mode, to the device in the URL, or to every gateway batch alike) and
expire after IDEMPOTENCY_RETENTION_SECONDS, deleted through their creation time's index.
"""
import contextlib
import hashlib
import os
import re
import time
from typing import NamedTuple

import sqlalchemy as sa
from flask import abort, current_app, g, request

from canary.database import write_transaction
from canary.monitoring.instruments import IDEMPOTENCY
from canary.web.errors import error_response
from canary.web.requests import request_body
from canary.web.responses import BufferedResponse
from models import IdempotencyKey, db

HEADER = "Idempotency-Key"
_HEADER_KEY = "HTTP_IDEMPOTENCY_KEY"
# An sf-string's characters (printable ASCII but '"' and '\'), sent quoted as the draft says, or bare.
_KEY = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e]{1,255})"\Z|([\x20\x21\x23-\x5b\x5d-\x7e]{1,255})\Z')
EXPIRY_EVERY_SECONDS = 60.0
EXPIRED_PER_DELETE = 10_000
MALFORMED = f"The {HEADER} header must be 1 to 255 printable ASCII characters, with no double quote or backslash."
MISMATCH = f"This {HEADER} was first sent with another request body or path; use a new key for a new request."
IN_FLIGHT = f"The first request with this {HEADER} is still being handled; retry in a moment."
TAKEN_OVER = f"A retry with this {HEADER} was handled while this request waited; nothing was stored by this one."
_last_expiry = [0.0]


class Claim(NamedTuple):
    """A request's hold on its key: the key, its scope, and this request's mark as the owner."""

    scope: str
    key: str
    owner: str


class LostClaim(Exception):
    """The claim's lease ran out and a retry took the key over: this request must store nothing."""


def claim(device_uuid=None):
    """Claim the request's Idempotency-Key; None without one. A retry's answer is returned at once, via abort."""
    header = request.headers.get(HEADER)
    if header is None:
        return None
    match = _KEY.match(header)
    if match is None:
        abort(error_response(400, MALFORMED))
    grant = g.get("grant")
    scope = (f"token:{grant.token_id}" if grant is not None else
             f"device:{device_uuid}" if device_uuid is not None else "open")
    digest = request_hash(request.method, request.path, request_body())
    mine = Claim(scope, match[1] or match[2], os.urandom(16).hex())
    config = current_app.config
    now = time.time()
    with write_transaction(db.engine) as connection:
        if connection.dialect.name == "postgresql":
            # A claim lost in a crash costs nothing: its readings were not stored either.
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        _expire(connection, now - config["IDEMPOTENCY_RETENTION_SECONDS"], now)
        answer = _take(connection, mine, digest, now, config)
    if answer is not None:
        abort(answer)
    return mine


def request_hash(method, path, body):
    """Return what tells a retry from another request with the same key: a hash of the method, path and body."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def _take(connection, mine, request_hash, now, config):
    """Take the key for this request and return None, or return the answer a retry gets."""
    fresh = {"request_hash": request_hash, "created_at": now, "owner": mine.owner, "status": None, "response": None,
             "lease_until": now + config["IDEMPOTENCY_LEASE_SECONDS"]}
    insert = (sa.dialects.postgresql.insert if connection.dialect.name == "postgresql" else sa.dialects.sqlite.insert)
    taken = connection.execute(insert(IdempotencyKey).values(scope=mine.scope, key=mine.key, **fresh)
                               .on_conflict_do_nothing().returning(IdempotencyKey.key)).first()
    if taken is not None:
        return None
    this_key = (IdempotencyKey.scope == mine.scope, IdempotencyKey.key == mine.key)
    known = connection.execute(sa.select(IdempotencyKey).where(*this_key).with_for_update()).one()
    if known.created_at < now - config["IDEMPOTENCY_RETENTION_SECONDS"]:
        connection.execute(sa.update(IdempotencyKey).where(*this_key).values(**fresh))  # expired: a new key
        return None
    if known.request_hash != request_hash:
        IDEMPOTENCY.labels("mismatch").inc()
        return error_response(422, MISMATCH, errors={HEADER: [MISMATCH]})
    if known.status is not None:
        IDEMPOTENCY.labels("replayed").inc()
        response = BufferedResponse(known.response, status=known.status, mimetype="application/json")
        response.headers["Idempotent-Replayed"] = "true"
        return response
    if known.lease_until is not None and known.lease_until > now:
        IDEMPOTENCY.labels("in_flight").inc()
        return error_response(409, IN_FLIGHT, headers={"Retry-After": "1"})
    IDEMPOTENCY.labels("taken_over").inc()
    connection.execute(sa.update(IdempotencyKey).where(*this_key).values(
        owner=mine.owner, lease_until=now + config["IDEMPOTENCY_LEASE_SECONDS"]))
    return None


def _expire(connection, cutoff, now):
    """Delete keys past their retention, a bounded number at a time, at most once a minute per process."""
    if now - _last_expiry[0] < EXPIRY_EVERY_SECONDS:
        return
    _last_expiry[0] = now
    oldest = sa.select(IdempotencyKey.scope, IdempotencyKey.key).where(IdempotencyKey.created_at < cutoff).order_by(
        IdempotencyKey.created_at).limit(EXPIRED_PER_DELETE)
    connection.execute(sa.delete(IdempotencyKey).where(sa.tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(oldest)))


def complete(connection, mine, status, body):
    """Write the response into the claimed key, in the transaction that stores its readings; raise LostClaim if
    the claim is no longer this request's."""
    done = connection.execute(sa.update(IdempotencyKey).where(
        IdempotencyKey.scope == mine.scope, IdempotencyKey.key == mine.key, IdempotencyKey.owner == mine.owner,
        IdempotencyKey.status.is_(None)).values(status=status, response=body.decode(), owner=None, lease_until=None))
    if done.rowcount != 1:
        raise LostClaim()
    IDEMPOTENCY.labels("stored").inc()


def release(mine):
    """Give up a claim whose request failed before storing anything, so that a corrected retry may use the key."""
    with write_transaction(db.engine) as connection:
        connection.execute(sa.delete(IdempotencyKey).where(
            IdempotencyKey.scope == mine.scope, IdempotencyKey.key == mine.key, IdempotencyKey.owner == mine.owner,
            IdempotencyKey.status.is_(None)))


def keyed(device_uuid=None):
    """Claim the request's key, if it has one, around storing its readings; give it up if the request fails."""
    if _HEADER_KEY not in request.environ:  # as request.headers would look it up, without its cost
        return _UNKEYED  # most requests: no generator to start and finish on the hot path
    return _claimed(device_uuid)


_UNKEYED = contextlib.nullcontext()


@contextlib.contextmanager
def _claimed(device_uuid):
    mine = claim(device_uuid)
    try:
        yield mine
    except LostClaim:
        abort(error_response(409, TAKEN_OVER, headers={"Retry-After": "1"}))
    except BaseException:
        if mine is not None:
            release(mine)
        raise
