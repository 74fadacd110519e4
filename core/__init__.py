"""Burrow's domain, between HTTP (gateway/) and jobs (workers/)."""
