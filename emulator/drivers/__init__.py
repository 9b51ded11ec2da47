"""Drivers that run sans-I/O nodes on real I/O (sockets, the event loop's clock)."""
