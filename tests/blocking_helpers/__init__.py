"""Helper code for the blocking watchdog's tests: blocking calls hidden in helpers."""
