"""nginx in front of the app: its configuration for one run, its user, and the private folder of the sockets."""
import grp
import os
import pwd
import shutil
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"


def listen_address(environ):
    """Return the public host:port: BIND, else 127.0.0.1 and PORT (default 8000)."""
    return environ.get("BIND") or f"127.0.0.1:{environ.get('PORT', '8000')}"


def find_nginx():
    """Return the path of the nginx executable, or None when nginx is not installed."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def nginx_user(environ):
    """Return the (name, uid, gid) nginx's workers run as when started by root, else None."""
    if os.geteuid() != 0:
        return None  # nginx runs its workers as the user who started it
    entry = pwd.getpwnam(environ.get("NGINX_USER") or "nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def make_private_runtime(environ):
    """Return a new folder for the sockets and nginx's files that only this user and nginx's workers can enter."""
    runtime = Path(tempfile.mkdtemp(prefix="canary-serve-"))  # mode 0700
    user = nginx_user(environ)
    if user is not None:
        # As root: nginx's workers may pass through to the sockets, but not list or change the folder.
        os.chown(runtime, -1, user[2])
        runtime.chmod(0o710)
    return runtime


def hand_socket_to_nginx(environ, path):
    """Make an app socket (mode 0600) connectable by nginx's workers, and by nobody else but root."""
    user = nginx_user(environ)
    if user is not None:
        os.chown(path, user[1], user[2])


def nginx_config(environ, settings, runtime, sockets):
    """Return nginx.conf with this run's address, socket, limits and paths filled in."""
    user = nginx_user(environ)
    values = {
        "USER": "" if user is None else f"user {user[0]} {grp.getgrgid(user[2]).gr_name};\n",
        "LISTEN": listen_address(environ),
        "SERVERS": "\n".join(f"        server unix:{socket} max_fails=0;" for socket in sockets).strip(),
        "RUNTIME": str(runtime),
        "MAX_BODY": str(max(settings["MAX_CONTENT_LENGTH"], settings["MAX_BATCH_CONTENT_LENGTH"])),
        "MAX_CONTENT_LENGTH": str(settings["MAX_CONTENT_LENGTH"]),
        "REFUSE_ANONYMOUS_POSTS": "1" if settings["AUTH"] == "tokens" and settings["ROLE"] != "query" else "0",
        "MAX_BATCH_CONTENT_LENGTH": str(settings["MAX_BATCH_CONTENT_LENGTH"]),
        "ACCESS_LOGS": access_logs(environ, settings, runtime),
        **rate_limits(settings),
        **tls(settings),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


# zone -> (the settings of its rate and burst, the map variable that keys it, its memory)
LIMIT_ZONES = {
    "device_writes": ("LIMIT_DEVICE_WRITES", "$canary_device_write", "32m"),
    "token_writes": ("LIMIT_INGEST_TOKEN", "$canary_token_write", "8m"),
    "token_reads": ("LIMIT_READ_TOKEN", "$canary_token_read", "8m"),
}


def rate_limits(settings):
    """Return the limit_req zones (http level) and limits (server level) the settings turn on."""
    zones, limits = [], []
    for zone, (setting, key, memory) in LIMIT_ZONES.items():
        rate = settings[setting]
        if not rate or (zone != "device_writes" and settings["AUTH"] != "tokens"):
            continue  # 0 turns a limit off; in open mode there are no tokens to key by
        zones.append(f"    limit_req_zone {key} zone={zone}:{memory} rate={rate}r/s;")
        limits.append(f"        limit_req zone={zone} burst={settings[setting + '_BURST']} nodelay;")
    return {"LIMIT_ZONES": "\n".join(zones), "LIMITS": "\n".join(limits)}


def access_logs(environ, settings, runtime):
    """Return the access_log lines: the request log's JSON lines for what nginx answers itself, the count
    files /metrics reads, and ACCESS_LOG's plain log."""
    lines = []
    destination = settings["REQUEST_LOG"]
    if destination:
        path = "/dev/stderr" if destination == "-" else os.path.abspath(destination)
        lines.append(f"    access_log {path} canary_json if=$canary_by_nginx;")
    if settings["METRICS"]:
        lines.append(f"    access_log {proxy_counts(runtime)}/$status-$canary_route.count canary_count "
                     f"if=$canary_by_nginx;")
    access_log = environ.get("ACCESS_LOG")
    if access_log:
        lines.append(f"    access_log {'/dev/stdout' if access_log == '-' else access_log};")
    return "\n".join(lines) or "    access_log off;"


def proxy_counts(runtime):
    """Return the folder of nginx's count files: one per status and route, a line per answer nginx gave itself."""
    return runtime / "nginx-counts"


def make_proxy_counts(environ, runtime):
    """Make the count files' folder, writable by nginx's workers."""
    folder = proxy_counts(runtime)
    folder.mkdir(mode=0o700)
    user = nginx_user(environ)
    if user is not None:
        os.chown(folder, user[1], user[2])
    return folder


def tls(settings):
    """Return the listen parameters and directives of HTTPS and HTTP/2, when a certificate and key are set."""
    certificate, key = settings["TLS_CERTIFICATE"], settings["TLS_KEY"]
    if not certificate and not key:
        return {"TLS_LISTEN": "", "TLS": ""}
    if not (certificate and key):
        raise SystemExit("serve: set both CANARY_TLS_CERTIFICATE and CANARY_TLS_KEY, or neither")
    for path in (certificate, key):
        if not os.access(path, os.R_OK):
            raise SystemExit(f"serve: cannot read {path}")
    return {"TLS_LISTEN": " ssl http2", "TLS": (
        f"        ssl_certificate {os.path.abspath(certificate)};\n"
        f"        ssl_certificate_key {os.path.abspath(key)};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        ssl_session_cache shared:tls:10m;\n")}
