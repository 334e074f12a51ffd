"""Token management on the command line (`flask --app app tokens ...`); no HTTP route manages tokens."""
import datetime
import time

import click
import sqlalchemy as sa
from flask import Blueprint, current_app
from marshmallow import ValidationError

from canary.access.rules import KINDS
from canary.access.tokens import new_token, token_digest
from canary.database import write_transaction
from models import Token, db
from schemas import load_device_uuid

bp = Blueprint("tokens", __name__)
bp.cli.help = "Create, list and revoke the bearer tokens that devices, gateways and dashboards send."

LABEL_LENGTH = 200
SHOWN_ONCE = "Keep the token now: only its digest is stored, so it cannot be shown again."
SHOWN_ONCE_MANY = "Keep the tokens now: only their digests are stored, so they cannot be shown again."
_REPORTED_LINES = 10


@bp.cli.command("create")
@click.option("--kind", required=True, type=click.Choice(KINDS),
              help="device: one device's readings; ingest: post for any device; read: read any device; "
                   "metrics: GET /metrics only, for a Prometheus scraper.")
@click.option("--device", metavar="DEVICE_UUID", help="The device a device token is bound to.")
@click.option("--devices-file", type=click.File("r"),
              help="A file of device_uuids, one a line: one device token each, printed as device_uuid,token CSV.")
@click.option("--label", help="A note that tells the token apart in `list`.")
def create(kind, device, devices_file, label):
    """Create tokens and print them; each is shown this once only."""
    if kind == "device" and (device is None) == (devices_file is None):
        raise click.UsageError("A device token needs exactly one of --device and --devices-file.")
    if kind != "device" and (device is not None or devices_file is not None):
        raise click.UsageError("Ingest and read tokens are bound to no device; drop --device and --devices-file.")
    label = check_label(label)
    if devices_file is not None:
        devices = read_devices(devices_file)
        tokens = store_tokens(kind, devices, label)
        click.echo("\n".join(["device_uuid,token"] + [f"{d},{t}" for d, t in zip(devices, tokens)]))
        click.echo(f"Created {len(tokens):,} device tokens. {SHOWN_ONCE_MANY}", err=True)
        return
    if device is not None:
        try:
            device = load_device_uuid(device)
        except ValidationError as error:
            raise click.BadParameter(" ".join(error.messages["device_uuid"]), param_hint="--device") from None
    click.echo(store_tokens(kind, [device], label)[0])
    click.echo(SHOWN_ONCE, err=True)


def check_label(label):
    """Return a label fit for one line of `list`, or None for no label."""
    if not label:
        return None
    if len(label) > LABEL_LENGTH or not label.isprintable():
        raise click.BadParameter(f"Use at most {LABEL_LENGTH} printable characters.", param_hint="--label")
    return label


def read_devices(lines):
    """Return the device_uuids of a file, one a line; refuse the whole file if any is bad or repeated."""
    devices, first_line, problems = [], {}, []
    for number, line in enumerate(lines, start=1):
        device = line.strip()
        if not device:
            continue
        try:
            load_device_uuid(device)
        except ValidationError as error:
            problems.append(f"line {number}: {' '.join(error.messages['device_uuid'])}")
            continue
        if device in first_line:
            problems.append(f"line {number}: {device} repeats line {first_line[device]}")
            continue
        first_line[device] = number
        devices.append(device)
    if problems:
        more = f" (and {len(problems) - _REPORTED_LINES} more)" if len(problems) > _REPORTED_LINES else ""
        raise click.ClickException("No token was created; fix the devices file:\n  "
                                   + "\n  ".join(problems[:_REPORTED_LINES]) + more)
    if not devices:
        raise click.ClickException("The devices file names no device.")
    return devices


def store_tokens(kind, devices, label):
    """Store a new token of a kind for each device (None for no device) in one transaction; return them."""
    created_at = int(time.time())
    tokens = [new_token() for _ in devices]
    rows = [{"digest": token_digest(token), "kind": kind, "device_uuid": device, "label": label,
             "created_at": created_at} for token, device in zip(tokens, devices)]
    current_app.extensions["canary_schema"].ensure()
    with write_transaction(db.engine) as connection:
        connection.execute(sa.insert(Token.__table__), rows)
    return tokens


@bp.cli.command("list")
def list_tokens():
    """Print one line per token: id, kind, device, label, created and revoked (UTC); never the token."""
    columns = (Token.id, Token.kind, Token.device_uuid, Token.label, Token.created_at, Token.revoked_at)
    current_app.extensions["canary_schema"].ensure()
    with db.engine.connect() as connection:
        for token_id, kind, device, label, created_at, revoked_at in connection.execute(
                sa.select(*columns).order_by(Token.id)):
            click.echo("\t".join([str(token_id), kind, device or "-", label or "-", utc(created_at), utc(revoked_at)]))


def utc(epoch_seconds):
    """Format epoch seconds as an ISO 8601 UTC time, or '-' for none."""
    if epoch_seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch_seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.cli.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def revoke(token_id):
    """Revoke the token with this id (the first column of `list`)."""
    current_app.extensions["canary_schema"].ensure()
    with write_transaction(db.engine) as connection:
        revoked_at = connection.execute(sa.select(Token.revoked_at).where(Token.id == token_id)).first()
        if revoked_at is None:
            raise click.ClickException(f"No token has id {token_id}; `list` shows the ids.")
        if revoked_at[0] is not None:
            click.echo(f"Token {token_id} was already revoked at {utc(revoked_at[0])}.")
            return
        connection.execute(sa.update(Token).where(Token.id == token_id).values(revoked_at=int(time.time())))
    bound = current_app.config["TOKEN_CACHE_SECONDS"]
    click.echo(f"Revoked token {token_id}; every server sharing this database refuses it within {bound:g} s.")
