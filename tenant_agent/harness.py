"""The built-in harness's entry point inside a box, the gateway's harness command:
python3 -I -S /opt/burrow/tenant_agent/harness.py with the run on stdin (the code is
tenant_agent/runs/harness.py)."""

import os
import sys

if __name__ == "__main__":
    # `tenant_agent` is found in the package's parent (-I leaves the script's own directory out).
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    from tenant_agent.runs.harness import main

    main()
