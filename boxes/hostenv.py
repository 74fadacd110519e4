"""The environment of every process Burrow starts as a box's uid (launchers, bwrap, slirp4netns):
fixed and minimal, never the server's.

bwrap's `--clearenv` clears only its own pointer list: the strings it inherited stay in its
memory and in `/proc/<pid>/environ` of bwrap's processes, which run as the box's uid and are
readable from inside the box. The server's environment holds the operator key and every
provider key, so none of it may reach those processes.
"""

from __future__ import annotations

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env() -> dict[str, str]:
    return {"PATH": PATH, "LANG": "C.UTF-8"}
