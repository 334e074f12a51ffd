"""The Canary readings API: the application factory, and the application it builds from the environment."""
import models
from canary import schema
from canary.access import roles, tokens
from canary.cli.rollups import bp as rollups_cli
from canary.cli.tokens import bp as tokens_cli
from canary.dashboard.views import bp as dashboard
from canary.database import configure_engine
from canary.ingest.views import bp as ingest
from canary.monitoring import observer
from canary.monitoring.exposition import bp as monitoring
from canary.openapi.page import bp as openapi_page
from canary.readings.views import bp as readings
from canary.statistics import builder
from canary.statistics.views import bp as statistics
from canary.web.application import CanaryFlask
from canary.web.errors import register_error_handlers
from canary.web.guards import RequestGuards
from canary.web.json import MsgspecJSONProvider
from canary.web.responses import BufferedResponse, no_sniffing
from configmodule import database_uri, load_settings

BLUEPRINTS = (ingest, readings, statistics, monitoring, openapi_page, dashboard, tokens_cli, rollups_cli)


def create_app(test_config=None):
    """Create the application from the environment's settings, then test_config's. It touches no database."""
    app = CanaryFlask(__name__, static_folder=None)  # the dashboard serves its own files, under /dashboard/
    app.response_class = BufferedResponse
    app.json = MsgspecJSONProvider(app)
    load_settings(app.config)
    app.config.update(test_config or {})
    app.config["SQLALCHEMY_DATABASE_URI"] = database_uri(app.config)

    app.url_map.merge_slashes = False  # RequestGuards routes `//` as `/`; Werkzeug would redirect
    app.wsgi_app = RequestGuards(app.wsgi_app, max(app.config["MAX_CONTENT_LENGTH"],
                                                   app.config["MAX_BATCH_CONTENT_LENGTH"]))
    observer.init_app(app)  # outermost: each request's id, log line and metrics, whatever answers it
    app.after_request(no_sniffing)
    models.db.init_app(app)
    with app.app_context():
        configure_engine(models.db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    # Order matters: a route this server's role leaves to others is a 404 to anyone, before the
    # schema or any token is looked at.
    roles.init_app(app)
    schema.init_app(app, models.db)
    builder.init_app(app)
    tokens.init_app(app)
    register_error_handlers(app)
    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
