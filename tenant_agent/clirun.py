"""An agent CLI run's entry point inside a box, the gateway's CLI run command:
python3 -I -S /opt/burrow/tenant_agent/clirun.py with the run on stdin (the code is
tenant_agent/runs/clirun.py)."""

import os
import sys

if __name__ == "__main__":
    # `tenant_agent` is found in the package's parent (-I leaves the script's own directory out).
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    from tenant_agent.runs.clirun import main

    main()
