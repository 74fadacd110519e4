"""The tenant agent: the home box's service that keeps the tenant's memory (server.py holds
the protocol; started by tenant_agent/__main__.py)."""
