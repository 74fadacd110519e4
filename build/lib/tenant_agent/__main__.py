"""Entry point inside a box: python3 /opt/burrow/tenant_agent/__main__.py"""

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tenant_agent.server import main  # noqa: E402

main()
