"""The tenant agent: the program each tenant's home box runs (inside the box, stdlib only)."""
