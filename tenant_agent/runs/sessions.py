"""Ending what a run started: a process started as a session leader (start_new_session), and
everything in its session — also what left its process group but not the session.

Stdlib only: runs inside boxes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

KILL_GRACE_S = 2.0


def session_processes(sid: int) -> list[int]:
    """Processes of session `sid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(sid):
            found.append(int(name))
    return found


def end_session(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, to everything in the session `proc` leads."""
    sid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = session_processes(sid) + ([proc.pid] if proc.poll() is None else [])
        if not pids:
            break
        for pid in set(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (proc.poll() is None or session_processes(sid)):
            time.sleep(0.05)
    proc.poll()
