"""Run nginx, configured as `python serve.py` configures it, in front of gunicorn's sync workers.

    python bench/nginx_gunicorn.py

A benchmark candidate: serve.py's launcher with gunicorn (bench/gunicorn_sync.conf.py) on the
Unix socket in place of granian. It reads the same environment settings as serve.py.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canary.production import supervisor  # noqa: E402  (needs the repo root on the path)

GUNICORN_CONFIG = ROOT / "bench" / "gunicorn_sync.conf.py"


def gunicorn_commands(environ, settings, runtime):
    """Return the command that starts gunicorn's sync workers on one Unix socket, with that socket."""
    socket = supervisor.app_socket(runtime)
    return [([sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG),
              "--bind", f"unix:{socket}", environ.get("WSGI_APP") or "app:app"], socket)]


if __name__ == "__main__":
    sys.exit(supervisor.main(gunicorn_commands, "gunicorn"))
