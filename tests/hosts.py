"""What tests on this host share, importable without the server's packages (the client-only
test run in tests/client imports it): the box uid range of tests, the operator key test
servers use, and the leak check for box processes."""

from __future__ import annotations

import os
from pathlib import Path

# Box uids for tests sit apart from a `burrow serve` a developer may run on the same machine;
# two test runs side by side need different bases (BURROW_TEST_UID_BASE), or each one's leak
# check sees the other's boxes.
TEST_UID_BASE = int(os.environ.get("BURROW_TEST_UID_BASE", "3000000"))
# The last fifth of the range is the cluster tests' (tests/cluster/): their hosts' boxes live
# for a whole module, beside other tests that check that none of theirs outlived them.
CLUSTER_UID_BASE = TEST_UID_BASE + 800_000


OPERATOR_KEY = "op-" + "k" * 40


def box_processes(low: int = TEST_UID_BASE, high: int = CLUSTER_UID_BASE) -> list[int]:
    """Live (non-zombie) processes running as any box uid of the test range (by default the
    part of it outside the cluster tests')."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if "\nState:\tZ" in status:
            continue  # exited; only waiting for its parent (host init) to reap it
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                if low < uid < high:
                    found.append(int(entry))
    return found
