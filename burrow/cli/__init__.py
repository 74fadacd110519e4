"""The `burrow` command: the client commands (tenant, box, kb, memory, policy, stats) that
talk to a server over HTTP, and the server's commands (serve, gateway, worker, doctor, harness)
when the server distribution is installed (burrow/cli/plugins.py)."""

from burrow.cli import boxes, files, knowledge, memory, operator, ports, processes
from burrow.cli.app import main

__all__ = ["boxes", "files", "knowledge", "main", "memory", "operator", "ports", "processes"]
