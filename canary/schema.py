"""The schema's one home: the tables are models.py's, every change to them a migration in canary/migrations.

`flask --app app db upgrade` (Flask-Migrate) runs the migrations; so does each app process before its
first request, and again before the next request after one found a table gone. Nothing runs when
the app is imported. A database that predates migrations (tables but no alembic_version) is
recognised, completed where it lacks anything of the first migration, and stamped with it, so
that the upgrade runs only the later ones.
"""
import functools
import importlib.util
import threading
from pathlib import Path

import flask_migrate
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from canary.database import migration_lock

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"


def _first_migration():
    spec = importlib.util.spec_from_file_location("first_release", MIGRATIONS / "versions" / "0001_first_release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def head_revision():
    """Return the latest migration's revision."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine):
    """Return the database's revision, or None where it has none (new, or older than migrations)."""
    with engine.connect() as connection:
        try:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DBAPIError:
            return None


def upgrade(engine, metadata=None):
    """Bring the database's schema to the latest migration, stamping one that predates migrations first.

    Given the models' metadata, a database already at the latest migration gets back any table it lost.
    """
    if current_revision(engine) == head_revision():
        if metadata is not None:
            with migration_lock(engine), engine.connect() as connection:
                connection.execution_options(write=True)
                with connection.begin():
                    metadata.create_all(connection, checkfirst=True)
        return  # the usual case, without starting Alembic
    with migration_lock(engine):
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
        if "readings" in tables and "alembic_version" not in tables:
            with engine.connect() as connection:
                connection.execution_options(write=True)
                with connection.begin():
                    _first_migration().create_first_release_schema(connection)
            flask_migrate.stamp(directory=str(MIGRATIONS), revision=FIRST_REVISION)
    flask_migrate.upgrade(directory=str(MIGRATIONS))


class Schema:
    """Migrates the schema before a process's first request, and again before the next one after a table was lost."""

    def __init__(self, db):
        self.db, self.ready, self.lost_table, self._lock = db, False, False, threading.Lock()

    def ensure(self):
        """Migrate the schema unless this process already has, or knows it is whole."""
        if self.ready:
            return
        with self._lock:
            if not self.ready:
                upgrade(self.db.engine, self.db.metadata if self.lost_table else None)
                self.ready, self.lost_table = True, False

    def lost(self):
        """Note that a table went missing, so that the next request migrates the schema again and makes it anew.

        A readings table made anew has no rollup triggers: answers read raw readings until the
        rollups' builder has armed them again (canary/statistics/builder.py).
        """
        self.ready, self.lost_table = False, True


def init_app(app, db):
    """Give the app `flask db` and migrate its schema on each process's first request."""
    flask_migrate.Migrate(app, db, directory=str(MIGRATIONS))
    schema = app.extensions["canary_schema"] = Schema(db)
    app.before_request(schema.ensure)
