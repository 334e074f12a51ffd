"""The OpenAPI document at /openapi.json, and /docs: Swagger UI served from the pinned package, on no other host."""
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template_string, send_from_directory

from canary.access.rules import PUBLIC, access
from canary.openapi.describe import documented
from canary.openapi.document import document_of
from canary.web.responses import confine_page

bp = Blueprint("openapi", __name__)

# Swagger UI's own style sheet draws its icons from data: URIs; nothing else comes from elsewhere.
DOCS_CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SWAGGER_UI_DIR = str(files("flask_swagger_ui") / "dist")
DOCS_SCRIPT_DIR = str(Path(__file__).resolve().parent / "static")
# The files the docs page loads, with their types: set here so no platform MIME table decides them.
DOCS_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
               "favicon-32x32.png": "image/png", "docs.js": "text/javascript"}

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Canary readings API</title>
  <link rel="stylesheet" href="{{ url_for('openapi.docs_asset', filename='swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ url_for('openapi.docs_asset', filename='favicon-32x32.png') }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ url_for('openapi.docs_asset', filename='swagger-ui-bundle.js') }}"></script>
  <script src="{{ url_for('openapi.docs_asset', filename='docs.js') }}"
          data-document="{{ url_for('openapi.openapi_document') }}"></script>
</body>
</html>
"""


@bp.get("/openapi.json", strict_slashes=False)
@access(PUBLIC)
@documented(database=False, responses={200: ("This document.", {"type": "object"})})
def openapi_document():
    """Return the OpenAPI document of this API."""
    return jsonify(document_of(current_app))


@bp.get("/docs", strict_slashes=False)
@access(PUBLIC)
@documented(database=False, responses={200: ("The interactive documentation page.", {"type": "string"}, "text/html")})
def docs():
    """Serve the interactive documentation page, which needs no other host."""
    return confine_page(current_app.make_response(render_template_string(DOCS_PAGE)),
                        DOCS_CONTENT_SECURITY_POLICY)


@bp.get(f"/docs/assets/<any({', '.join(repr(name) for name in DOCS_ASSETS)}):filename>")
@access(PUBLIC)
def docs_asset(filename):
    """Serve a file of the docs page from the pinned Swagger UI package, or the script that starts it.

    Not in the document: the page's own files, not part of the API.
    """
    folder = DOCS_SCRIPT_DIR if filename == "docs.js" else SWAGGER_UI_DIR
    return send_from_directory(folder, filename, mimetype=DOCS_ASSETS[filename])
