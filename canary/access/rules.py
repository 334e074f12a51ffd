"""Which tokens may call each route: the rule a view is marked with, and what each kind of token is granted."""

# What a view serves, and so which tokens may call it.
PUBLIC = "public"  # anyone: health, documentation, the dashboard page itself
DEVICE_WRITE = "device-write"  # POST for the device in the URL: its device token or an ingest token
GATEWAY_WRITE = "gateway-write"  # POST naming devices in the body: an ingest token, or a device token for its own
DEVICE_READ = "device-read"  # GET of the device in the URL: its device token or a read token
FLEET_READ = "fleet-read"  # GET across devices: a read token
METRICS_READ = "metrics-read"  # GET /metrics: a metrics token, a Prometheus scraper's
RULES = (PUBLIC, DEVICE_WRITE, GATEWAY_WRITE, DEVICE_READ, FLEET_READ, METRICS_READ)
WRITE_RULES = {DEVICE_WRITE, GATEWAY_WRITE}
READ_RULES = {DEVICE_READ, FLEET_READ}

KINDS = ("device", "ingest", "read", "metrics")
# Besides the rules a device token's own device grants: a device token may use DEVICE_WRITE and
# DEVICE_READ for its own device, and GATEWAY_WRITE for batches of its own readings only.
KIND_RULES = {"device": {GATEWAY_WRITE}, "ingest": {DEVICE_WRITE, GATEWAY_WRITE}, "read": {DEVICE_READ, FLEET_READ},
              "metrics": {METRICS_READ}}
DEVICE_RULES = {DEVICE_WRITE, DEVICE_READ}


def access(rule):
    """Mark a view with the rule that says which tokens may call it."""
    if rule not in RULES:
        raise ValueError(f"unknown access rule {rule!r}")

    def mark(view):
        view.access_rule = rule
        return view

    return mark


def rule_of(app, endpoint):
    """Return the access rule of an endpoint's view; Flask's static files are public, unmarked views None."""
    rule = getattr(app.view_functions.get(endpoint), "access_rule", None)
    if rule is None and endpoint.rpartition(".")[2] == "static":  # the name Flask gives static-file routes
        return PUBLIC
    return rule


def permits(grant, rule, view_args):
    """Tell whether a token's grant allows a view's access rule for the URL's variables."""
    if rule in KIND_RULES[grant.kind]:
        return True
    return grant.kind == "device" and rule in DEVICE_RULES and grant.device_uuid == view_args.get("device_uuid")
