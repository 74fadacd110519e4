"""Burrow's own programs inside every box, and the paths boxes keep of them. A home box's
service argv names its agent's path (DEFAULT_AGENT_COMMAND) and is stored with the box, so
a box created before a move of the code still wakes with that argv: these in-box paths stay
as they are whatever the code's layout on the host, which image_extras() maps to them."""

from __future__ import annotations

from pathlib import Path

import tenant_agent

# Where the tenant_agent package is in every box's image.
AGENT_DIR = "opt/burrow/tenant_agent"
# -I -S: no site, no environment, no user paths: the agent is stdlib-only and starts fast.
DEFAULT_AGENT_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/__main__.py"]
HARNESS_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/harness.py"]
CLI_RUN_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/clirun.py"]
# The loopback port of a box's git relay (in its daemon): git's https traffic goes there and
# out through the host socket, which adds the box's credentials (gateway/gitrelay.py).
GIT_RELAY_PORT = 7171


def image_extras() -> dict[str, Path]:
    """The directories of the image beyond the box runtime's own: the agent's package."""
    return {AGENT_DIR: Path(tenant_agent.__file__).parent}
