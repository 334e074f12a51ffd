"""The dashboard page: a fleet view and a device view, drawn in the browser from the API's read routes."""
