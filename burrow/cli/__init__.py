"""The `burrow` command: the server processes (serve, gateway, worker, doctor) and the client
commands (tenant, box, kb, memory, policy, stats) that talk to a server over HTTP."""

from burrow.cli import boxes, files, knowledge, memory, operator, server
from burrow.cli.app import main

__all__ = ["boxes", "files", "knowledge", "main", "memory", "operator", "server"]
