"""Statistics over groupings: a device's readings in time buckets, and one row per device of the fleet."""
