"""Provisioning of the agent CLIs (models/relay/harnesses.py): pinned installs from npm into
read-only, versioned directories that box uids can reach, each with a manifest naming its
native executable; a second install is a no-op, a failed one leaves nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from models.relay import harnesses

pytestmark = [pytest.mark.timeout(600), pytest.mark.agent_clis]


@pytest.mark.parametrize("name", list(harnesses.HARNESSES))
def test_an_install_is_pinned_native_read_only_and_done_once(name: str) -> None:
    found = harnesses.install(name)
    again = harnesses.install(name, npm="/bin/false")  # installed: npm is not run again
    assert again == found
    assert found.path.name == f"{name}-{harnesses.HARNESSES[name].version}"
    with found.executable.open("rb") as f:
        assert f.read(4) == harnesses.ELF  # no Node process per run
    mode = found.path.stat().st_mode
    assert not mode & 0o222 and mode & stat.S_IXOTH  # nobody writes; box uids traverse
    writable = [p for p in found.path.rglob("*")
                if not p.is_symlink() and p.stat().st_mode & 0o222]
    assert writable == []
    # the manifest's bytes are du's (a block or so may settle after the write)
    assert abs(found.bytes - harnesses.disk_bytes(found.path)) <= 64 << 10
    home = Path(tempfile.mkdtemp(prefix="burrow-harness-home-"))
    os.chown(home, 65534, 65534)
    version = subprocess.run(  # it starts as another uid, from the read-only install
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(found.executable),
         "--version"], capture_output=True, text=True, timeout=60, cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "CODEX_HOME": str(home),
             "TMPDIR": str(home)})
    shutil.rmtree(home)
    assert harnesses.HARNESSES[name].version in version.stdout
    assert harnesses.mounts([name]) == [(found.path, f"/opt/burrow/harnesses/{name}")]


def test_opencode_keeps_only_the_build_it_runs() -> None:
    found = harnesses.install("opencode")
    packages = sorted(p.name for p in (found.path / "node_modules").iterdir()
                      if p.name.startswith("opencode-"))
    assert packages in (["opencode-ai", "opencode-linux-x64"],
                        ["opencode-ai", "opencode-linux-x64-baseline"])


def test_a_failed_install_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error 404 Not Found' >&2\nexit 1\n")
    npm.chmod(0o755)
    root = tmp_path / "harnesses"
    with pytest.raises(harnesses.HarnessError, match="404 Not Found"):
        harnesses.install("codex", root, npm=str(npm))
    assert os.listdir(root) == []
    with pytest.raises(harnesses.HarnessError, match="not installed"):
        harnesses.mounts(["codex"], root)


def test_a_root_box_uids_cannot_reach_is_refused(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    target = hidden / "codex-0.171.0"
    found = harnesses.install("codex")
    target.symlink_to(found.path)  # installed, but below a directory others cannot enter
    with pytest.raises(harnesses.HarnessError, match="not traversable"):
        harnesses.mounts(["codex"], hidden)
