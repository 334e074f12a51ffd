"""The OpenAPI document, built from the routes and what each view's decorator says of it, and its docs page."""
