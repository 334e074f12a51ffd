"""Alembic's environment: migrations run online, on the app's engine, one process at a time."""
from alembic import context
from flask import current_app

from canary.database import migration_lock

config = context.config
migrate = current_app.extensions["migrate"]


def run_migrations_online():
    """Run the migrations in one transaction that holds the migration lock, as no other writer can."""
    engine = migrate.db.engine
    with migration_lock(engine), engine.connect() as connection:
        connection.execution_options(write=True)  # on SQLite, BEGIN IMMEDIATE: writers wait their turn
        context.configure(connection=connection, target_metadata=migrate.db.metadata,
                          transactional_ddl=True,
                          **migrate.configure_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("The migrations run online only: `flask --app app db upgrade`.")
run_migrations_online()
