"""The tenant agent's entry point inside a box, in every home box's service argv:
python3 -I -S /opt/burrow/tenant_agent/__main__.py (the code is tenant_agent/memory/)."""

import os
import sys

# `tenant_agent` is found in the package's parent (-I leaves the script's own directory out).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tenant_agent.memory.server import main  # noqa: E402

main()
