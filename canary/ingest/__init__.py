"""The write path: the POST routes, checking readings, and storing them (single readings share commits)."""
