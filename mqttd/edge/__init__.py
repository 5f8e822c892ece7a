"""The master's edge: what a connection meets before its first byte is read.

``door`` decides at accept (bans, the global cap, per-address caps and connect rates,
the allowlist); ``guard`` puts a door in front of a Twisted listener's factory, as the
single-process service does. The master's own accept loop calls the door directly.
"""
