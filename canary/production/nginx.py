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
    access_log = environ.get("ACCESS_LOG")
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
        "ACCESS_LOG": "off" if not access_log else ("/dev/stdout" if access_log == "-" else access_log),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text
