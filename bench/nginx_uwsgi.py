"""Run nginx, configured as `python serve.py` configures it, in front of uWSGI speaking the uwsgi protocol.

    python bench/nginx_uwsgi.py

A benchmark candidate: serve.py's launcher with one uWSGI process (the pyuwsgi wheel) per worker
in place of each granian worker, on the same per-worker Unix sockets with the same threads per
worker, and nginx's `uwsgi_pass` in place of `proxy_pass`. The uwsgi protocol has no keep-alive, so
nginx opens a connection to a worker for each request. It reads the same environment settings as
serve.py.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canary.production import nginx, supervisor  # noqa: E402  (needs the repo root on the path)

# What a WSGI server needs from nginx; every request header is passed as well, as HTTP_*.
UWSGI_PARAMS = {
    "REQUEST_METHOD": "$request_method",
    "PATH_INFO": "$uri",
    "QUERY_STRING": "$query_string",
    "CONTENT_TYPE": "$content_type",
    "CONTENT_LENGTH": "$content_length",
    "SERVER_PROTOCOL": "$server_protocol",
    "REQUEST_SCHEME": "$scheme",
    "REMOTE_ADDR": "$remote_addr",
    "REMOTE_PORT": "$remote_port",
    "SERVER_NAME": "$server_name",
    "SERVER_PORT": "$server_port",
}
# proxy_* directives with a uwsgi_* twin; the others only concern HTTP to the upstream.
SHARED_DIRECTIVES = ("request_buffering", "buffering", "buffers", "max_temp_file_size",
                     "connect_timeout", "read_timeout", "send_timeout")


def uwsgi_nginx_config(environ, settings, runtime, sockets):
    """Return serve.py's nginx configuration, passing requests to the workers over the uwsgi protocol."""
    lines, replaced = [], False
    for line in nginx.nginx_config(environ, settings, runtime, sockets).splitlines():
        directive = line.strip()
        indent = line[:len(line) - len(line.lstrip())]
        if directive == "keepalive 64;":
            continue  # no keep-alive in the uwsgi protocol
        if directive == "proxy_pass http://app;":
            lines.append(f"{indent}uwsgi_pass app;")
            lines += [f"{indent}uwsgi_param {name} {value};" for name, value in UWSGI_PARAMS.items()]
            replaced = True
        elif directive.startswith("proxy_"):
            name = directive.split()[0].removeprefix("proxy_")
            if name in SHARED_DIRECTIVES:
                lines.append(f"{indent}uwsgi_{directive.removeprefix('proxy_')}")
        else:
            lines.append(line)
    if not replaced:
        raise SystemExit("nginx_uwsgi: nginx.conf has no `proxy_pass http://app;` to replace")
    return "\n".join(lines) + "\n"


def uwsgi_commands(environ, settings, runtime):
    """Return one uWSGI command per worker, each on a Unix socket of its own, with its socket."""
    executable = Path(sys.executable).with_name("uwsgi")
    if not executable.exists():
        raise SystemExit(f"nginx_uwsgi: {executable} is missing; install requirements.txt (pyuwsgi)")
    return [([
        str(executable), "--strict", "--master", "--processes", "1",
        "--threads", str(supervisor.worker_threads(environ, settings)), "--enable-threads",
        "--lazy-apps", "--single-interpreter", "--need-app", "--die-on-term", "--disable-logging",
        "--socket", str(socket), "--chmod-socket=666", "--listen", "1024", "--buffer-size", "65535",
        "--pythonpath", str(ROOT), "--module", environ.get("WSGI_APP") or "app:app",
    ], socket) for socket in supervisor.worker_sockets(environ, runtime)]


if __name__ == "__main__":
    sys.exit(supervisor.main(uwsgi_commands, "uWSGI", uwsgi_nginx_config))
