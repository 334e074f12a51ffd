"""HTTP plumbing: request bodies and filters, the one JSON error shape, the one JSON encoder, and WSGI guards."""
