"""The dashboard page: a fleet view and a device view, drawn in the browser from the API's read routes.

The HTML and its files are public; the page reads every figure from the API, sending a read token
when the server runs in tokens mode, so serving the page reveals nothing about any device.
"""
from flask import Blueprint, current_app, render_template

from auth import PUBLIC, access
from schemas import READING_TYPES, load_device_uuid

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")

# Scripts, styles, images and API calls from this origin only: the page must work without any other host.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@bp.after_request
def _page_headers(response):
    """Confine the page to this origin, in no frame."""
    return confine_page(response, CONTENT_SECURITY_POLICY)


def confine_page(response, policy):
    """Give an HTML page a Content-Security-Policy, refuse every frame, and send no Referer from it."""
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _render(template, **context):
    return render_template(template, auth_mode=current_app.config["AUTH"], reading_types=READING_TYPES,
                           **context)


@bp.get("/", strict_slashes=False)
@access(PUBLIC)
def fleet():
    """Serve the fleet view: every device's statistics in a sortable table."""
    return _render("dashboard/fleet.html", script="fleet.js", modules=["common.js"], all_time=True)


@bp.get("/devices/<device_uuid>/", strict_slashes=False)
@access(PUBLIC)
def device(device_uuid):
    """Serve a device's view: a chart of its readings over time and the statistics of the range."""
    return _render("dashboard/device.html", script="device.js", modules=["common.js", "chart.js"], all_time=False,
                   device_uuid=load_device_uuid(device_uuid))
