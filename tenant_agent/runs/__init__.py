"""One agent run inside a box: the built-in harness (harness.py, started by
tenant_agent/harness.py) and the agent CLIs (clirun.py, started by tenant_agent/clirun.py)."""
