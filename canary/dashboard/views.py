"""The dashboard's pages and files. The HTML is public and the same for every device, known or not; the page
reads every figure from the API, sending a read token when the server runs in tokens mode, so serving it
reveals nothing about any device.
"""
import re

from flask import Blueprint, current_app, render_template
from markupsafe import Markup, escape

from canary.access.rules import PUBLIC, access
from canary.openapi.describe import documented
from canary.web.responses import confine_page
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


@bp.app_template_filter("breakable")
def breakable(text):
    """Return text as HTML that may wrap after each '-', '_', '.' and ':', so a long device id breaks between words."""
    return Markup(re.sub(r"([-_.:])", r"\1<wbr>", str(escape(text))))


def _render(template, **context):
    return render_template(template, auth_mode=current_app.config["AUTH"], reading_types=READING_TYPES,
                           **context)


@bp.get("/", strict_slashes=False)
@access(PUBLIC)
@documented(database=False, responses={
    200: ("The dashboard's fleet view: a page whose script reads the summary route.", {"type": "string"}, "text/html")})
def fleet():
    """Serve the fleet view: every device's statistics in a sortable table."""
    return _render("dashboard/fleet.html", script="fleet.js", modules=["common.js"], all_time=True)


@bp.get("/devices/<device_uuid>/", strict_slashes=False)
@access(PUBLIC)
@documented(database=False, errors={422: "The device id breaks the schema."}, responses={
    200: ("The dashboard's view of a device, known or not: a page whose script reads the series and statistics "
          "routes.", {"type": "string"}, "text/html")})
def device(device_uuid):
    """Serve a device's view: a chart of its readings over time and the statistics of the range."""
    return _render("dashboard/device.html", script="device.js", modules=["common.js", "chart.js"], all_time=False,
                   device_uuid=load_device_uuid(device_uuid))
