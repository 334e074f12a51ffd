"""The rollups on the command line (`flask --app app rollups ...`): their state, and a rebuild in the foreground."""
import click
import sqlalchemy as sa
from flask import Blueprint, current_app

from canary.statistics import builder, rollups
from models import Rollup, RollupException, db

bp = Blueprint("rollups", __name__)
bp.cli.help = "Show the state of the statistics' rollups, or rebuild them from the stored readings."


@bp.cli.command("status")
def status():
    """Print whether the rollups are armed and built, how far a rebuild has come, and what they hold."""
    current_app.extensions["canary_schema"].ensure()
    with db.engine.connect() as connection:
        current, is_armed = rollups.state(connection), rollups.armed(connection)
        buckets = connection.execute(sa.select(sa.func.count()).select_from(Rollup)).scalar()
        excepted = connection.execute(sa.select(sa.func.count()).select_from(RollupException)).scalar()
    if current is None:
        raise click.ClickException("The database has no rollups: run `flask --app app db upgrade`.")
    click.echo(f"triggers: {'armed' if is_armed else 'missing (answers read raw readings until they are armed again)'}")
    click.echo(f"status: {current.status}")
    if current.status == "building" and current.frontier_device is not None:
        click.echo(f"frontier: device {current.frontier_device}, type {current.frontier_type}, "
                   f"date {current.frontier_date}")
    click.echo(f"buckets: {buckets:,}")
    click.echo(f"devices and types read raw: {excepted:,}")


@bp.cli.command("rebuild")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=builder.CHUNK_ROWS, show_default=True,
              help="Readings recomputed per write transaction.")
def rebuild(chunk_rows):
    """Empty the rollups and recompute them from the stored readings, arming their triggers first."""
    current_app.extensions["canary_schema"].ensure()
    builder.arm(db.engine)
    steps = 0
    while builder.step(db.engine, chunk_rows):
        steps += 1
        if steps % 20 == 0:
            with db.engine.connect() as connection:
                current = rollups.state(connection)
            click.echo(f"at device {current.frontier_device}, type {current.frontier_type}", err=True)
    click.echo("The rollups are built.")
