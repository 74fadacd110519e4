"""The agent CLIs on the host: pinned npm packages installed once per machine, each into a
versioned directory that boxes asking for it get bind-mounted read-only, so a box needs
neither npm nor network to run one.

Layout: `<root>/<name>-<version>/` holds the package's `node_modules` and a manifest,
`burrow-harness.json` (`name`, `package`, `version`, `entry` — the executable, relative —
`bytes` on disk). A box sees it at `/opt/burrow/harnesses/<name>` (tenant_agent/runs/clis.py reads
the manifest there). Invariants:
- An install is complete or absent: npm works in a hidden `.partial` directory, the CLI is
  run once (`--version`) to prove it starts, then the directory is made read-only and renamed
  into place. A second install of the same version is a no-op.
- The entry is the native executable (all three ship one; Codex's npm entry is a Node script
  that only spawns it), so a run costs no Node process.
- Platform packages the entry does not use are removed (OpenCode ships a second, "baseline"
  build of 177 MB for CPUs without AVX2).
- The root is `BURROW_HARNESS_DIR`, else /var/cache/burrow/harnesses for root (cached data that
  can be rebuilt; box uids must traverse to it, which root's own ~/.cache — mode 0700 — does not
  allow), else ~/.cache/burrow/harnesses.

Run it with `python -m models.relay.harnesses install [NAME…]` (all three by default) or
`list`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "burrow-harness.json"
BOX_DIR = "/opt/burrow/harnesses"
ELF = b"\x7fELF"


@dataclass(frozen=True)
class Harness:
    name: str  # as the API names it (Agent.CLAUDE_CODE = "claude-code", …)
    package: str
    version: str
    bin: str  # the package's bin name
    platform_prefix: str  # the names of its per-platform packages start with this

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


HARNESSES: dict[str, Harness] = {h.name: h for h in (
    Harness("claude-code", "@anthropic-ai/claude-code", "2.1.332", "claude",
            "@anthropic-ai/claude-code-"),
    Harness("codex", "@openai/codex", "0.171.0", "codex", "@openai/codex-"),
    Harness("opencode", "opencode-ai", "1.18.33", "opencode", "opencode-"),
)}


class HarnessError(RuntimeError):
    pass


@dataclass(frozen=True)
class Installed:
    harness: Harness
    path: Path
    entry: str  # relative to path
    bytes: int

    @property
    def executable(self) -> Path:
        return self.path / self.entry

    @property
    def box_path(self) -> str:
        return f"{BOX_DIR}/{self.harness.name}"


def default_root() -> Path:
    configured = os.environ.get("BURROW_HARNESS_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/burrow/harnesses")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "burrow" / "harnesses"


def disk_bytes(path: Path) -> int:
    """Bytes `path` takes on disk, hard links counted once (what `du` says)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def installed(name: str, root: Path | None = None) -> Installed | None:
    harness = _harness(name)
    path = (root or default_root()) / f"{harness.name}-{harness.version}"
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return Installed(harness, path, str(manifest["entry"]), int(manifest["bytes"]))


def _harness(name: str) -> Harness:
    if name not in HARNESSES:
        raise HarnessError(f"no harness {name!r}; use one of {', '.join(HARNESSES)}")
    return HARNESSES[name]


def _is_native(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == ELF
    except OSError:
        return False


def _packages(modules: Path) -> list[Path]:
    """Every package directory under node_modules (scoped ones included)."""
    found = []
    for child in sorted(modules.iterdir()) if modules.is_dir() else []:
        if child.name.startswith("@"):
            found += sorted(p for p in child.iterdir() if p.is_dir())
        elif not child.name.startswith("."):
            found.append(child)
    return found


def _entry(harness: Harness, prefix: Path) -> Path:
    """The native executable: the bin itself when it is one (Claude Code's and OpenCode's
    postinstall put it there), else the binary of the platform package."""
    modules = prefix / "node_modules"
    bin_path = (modules / ".bin" / harness.bin).resolve()
    if _is_native(bin_path):
        return bin_path
    for package in _packages(modules):
        if package.relative_to(modules).as_posix().startswith(harness.platform_prefix):
            for candidate in sorted(package.rglob(harness.bin)):
                if candidate.is_file() and _is_native(candidate):
                    return candidate
    raise HarnessError(f"{harness.spec} installed, but no native {harness.bin} executable was "
                       "found in it (an unsupported platform?)")


def _prune(harness: Harness, prefix: Path, entry: Path) -> None:
    """Drop the platform packages the entry is not from (and does not share an inode with)."""
    modules = prefix / "node_modules"
    keep = os.stat(entry).st_ino
    for package in _packages(modules):
        name = package.relative_to(modules).as_posix()
        if not name.startswith(harness.platform_prefix) or name == harness.package:
            continue
        if entry.is_relative_to(package):
            continue
        inodes = {os.lstat(p).st_ino for p in package.rglob("*") if p.is_file()}
        if keep not in inodes:
            shutil.rmtree(package)


def _read_only(path: Path) -> None:
    for top, dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(top, name)
            if not os.path.islink(file):
                mode = os.stat(file).st_mode
                os.chmod(file, 0o555 if mode & 0o111 else 0o444)
        for name in dirs:
            os.chmod(os.path.join(top, name), 0o555)
    os.chmod(path, 0o555)


def install(name: str, root: Path | None = None, npm: str = "npm",
            timeout_s: float = 900.0) -> Installed:
    """Install the pinned version of `name` under `root` (a no-op when it is there)."""
    harness = _harness(name)
    root = root or default_root()
    done = installed(name, root)
    if done is not None:
        return done
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    final = root / f"{harness.name}-{harness.version}"
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=root))
    try:
        env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
               "npm_config_audit": "false"}
        done_npm = subprocess.run(
            [npm, "install", "--prefix", str(work), "--no-save", "--no-package-lock",
             "--omit=dev", harness.spec],
            env=env, capture_output=True, text=True, timeout=timeout_s)
        if done_npm.returncode != 0:
            tail = " ".join((done_npm.stderr or done_npm.stdout).split())[-600:]
            raise HarnessError(f"npm install {harness.spec} failed: {tail}")
        entry = _entry(harness, work)
        _prune(harness, work, entry)
        _check_version(harness, entry, work)
        relative = entry.relative_to(work).as_posix()
        manifest = {"name": harness.name, "package": harness.package,
                    "version": harness.version, "entry": relative, "bytes": 0,
                    "installed_at": int(time.time())}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        size = manifest["bytes"] = disk_bytes(work)  # the manifest's own block included
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _read_only(work)  # readable and traversable by box uids, writable by nobody
        work.rename(final)
    except BaseException:
        _remove(work)
        raise
    return Installed(harness, final, relative, size)


def _check_version(harness: Harness, entry: Path, work: Path) -> None:
    scratch = tempfile.mkdtemp(prefix="burrow-harness-check-")
    try:
        out = subprocess.run([str(entry), "--version"], capture_output=True, text=True,
                             timeout=60, cwd=scratch, stdin=subprocess.DEVNULL,
                             env={"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
                                  "CODEX_HOME": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if harness.version not in out.stdout:
        raise HarnessError(f"{harness.spec} does not start: `{entry.name} --version` said "
                           f"{(out.stdout + out.stderr).strip()[:300]!r}")


def _remove(path: Path) -> None:
    """rmtree that first gives back the write bits a failed install may have taken."""
    if path.exists():
        os.chmod(path, 0o755)
        for top, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(top, name), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def mounts(names: list[str], root: Path | None = None) -> list[tuple[Path, str]]:
    """(host directory, path in the box) to bind read-only for a box that runs `names`;
    HarnessError naming the command when one is not installed, or when box uids cannot
    reach the root."""
    out = []
    for name in names:
        found = installed(name, root)
        if found is None:
            raise HarnessError(f"{name} is not installed on this server: run `python -m "
                               f"models.relay.harnesses install {name}`")
        for parent in found.path.parents:
            if parent.exists() and not os.stat(parent).st_mode & 0o001:
                raise HarnessError(f"box uids cannot reach {found.path}: {parent} is not "
                                   "traversable by others; set BURROW_HARNESS_DIR elsewhere")
        out.append((found.path, found.box_path))
    return out


def main(argv: list[str]) -> int:
    command, *names = argv or ["list"]
    names = names or list(HARNESSES)
    if command not in ("install", "list"):
        print("usage: python -m models.relay.harnesses install|list [NAME…]")
        return 2
    for name in names:
        started = time.monotonic()
        found = install(name) if command == "install" else installed(name)
        took = f" in {time.monotonic() - started:.1f} s" if command == "install" else ""
        if found is None:
            print(f"{name}: not installed")
        else:
            print(f"{name} {found.harness.version}: {found.bytes / 1e6:.0f} MB at "
                  f"{found.path}{took} (entry {found.entry})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
