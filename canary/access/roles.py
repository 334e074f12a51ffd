"""Server roles: an ingest server answers only the write routes, a query server only the read routes."""
from flask import abort, current_app, request

from canary.access.rules import READ_RULES, WRITE_RULES, rule_of

ROLES = {"all": None, "ingest": READ_RULES, "query": WRITE_RULES}  # role -> the rules of the routes it refuses
REFUSALS = {
    "ingest": "This server only takes readings; send queries to a query server.",
    "query": "This server only answers queries; send readings to an ingest server.",
}


def init_app(app):
    """Refuse the other role's routes with a 404, before any token is checked."""
    role = app.config["ROLE"]
    if role not in ROLES:
        raise ValueError(f"ROLE (environment CANARY_ROLE) must be one of {', '.join(ROLES)}, not {role!r}")
    if ROLES[role] is not None:
        app.before_request(refuse_other_role)


def refuse_other_role():
    """Answer 404 for routes that this server's role leaves to other servers."""
    if request.endpoint is None:
        return
    role = current_app.config["ROLE"]
    if rule_of(current_app, request.endpoint) in ROLES[role]:
        abort(404, REFUSALS[role])
