"""Access control: the token kinds that may call each route."""

# What a view serves, and so which tokens may call it.
PUBLIC = "public"  # anyone: health, documentation, the dashboard page itself
DEVICE_WRITE = "device-write"  # POST for the device in the URL: its device token or an ingest token
GATEWAY_WRITE = "gateway-write"  # POST naming devices in the body: an ingest token, or a device token for its own
DEVICE_READ = "device-read"  # GET of the device in the URL: its device token or a read token
FLEET_READ = "fleet-read"  # GET across devices: a read token
RULES = (PUBLIC, DEVICE_WRITE, GATEWAY_WRITE, DEVICE_READ, FLEET_READ)


def access(rule):
    """Mark a view with the rule that says which tokens may call it."""
    if rule not in RULES:
        raise ValueError(f"unknown access rule {rule!r}")

    def mark(view):
        view.access_rule = rule
        return view

    return mark
