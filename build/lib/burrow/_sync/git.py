# Generated from burrow/_async/git.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""git in a box, through exec: clone, init, status, diff, commit. A failing git command raises
GitError with git's own words."""

from __future__ import annotations

from burrow._sync.exec import Exec
from burrow._git import COMMIT_SCRIPT, WORKSPACE, checked, clone_target, parse_status
from burrow._models import GitStatus


class Git:
    """Commands run in `path`, by default the repository this object last cloned or
    initialised (else /workspace)."""

    def __init__(self, exec_: Exec) -> None:
        self._exec = exec_
        self.path = WORKSPACE

    def _git(self, what: str, args: list[str], path: str) -> str:
        result = self._exec.command(["git", *args], cwd=path)
        return checked(result, what, path)

    def clone(self, repo: str, path: str | None = None, *, branch: str | None = None,
              depth: int | None = None) -> str:
        """Clone `repo` (a URL, or a path in the box) to `path` (default
        /workspace/<name>); return the path, which later calls use by default."""
        target = clone_target(repo, path)
        args = ["clone", "--quiet"]
        if branch:
            args += ["--branch", branch]
        if depth:
            args += ["--depth", str(depth)]
        self._git("clone", [*args, "--", repo, target], WORKSPACE)
        self.path = target
        return target

    def init(self, path: str | None = None, *, branch: str = "main") -> str:
        """Make `path` (default /workspace) a new repository; return the path."""
        target = clone_target("", path) if path else WORKSPACE
        self._git("init", ["init", "--quiet", f"--initial-branch={branch}", target],
                  WORKSPACE)
        self.path = target
        return target

    def status(self, path: str | None = None) -> GitStatus:
        out = self._git("status", ["status", "--porcelain=v1", "--branch", "-z"],
                        path or self.path)
        return parse_status(out)

    def diff(self, path: str | None = None, *, staged: bool = False) -> str:
        """The diff of the working tree (or, `staged`, of the index) against HEAD."""
        args = ["diff", "--no-color", *(["--cached"] if staged else [])]
        return self._git("diff", args, path or self.path)

    def commit(self, message: str, path: str | None = None) -> str:
        """Stage every change (`git add -A`) and commit; return the new commit's sha."""
        where = path or self.path
        result = self._exec.command(["sh", "-c", COMMIT_SCRIPT, "git-commit", message],
                                    cwd=where)
        return checked(result, "commit", where).strip().splitlines()[-1]
