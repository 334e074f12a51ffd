"""Access control: each route's rule, the bearer tokens that grant them, and the server's role."""
