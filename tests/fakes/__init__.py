"""Fake upstreams: real loopback HTTP servers speaking provider wire formats."""
