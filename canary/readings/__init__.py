"""One device's history: its readings listed in time order, one statistic over them, and the health check."""
