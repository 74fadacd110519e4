"""What the git helpers need besides running git: argv building and reading its output."""

from __future__ import annotations

import posixpath

from burrow._errors import GitError
from burrow._models import ExecResult, GitChange, GitStatus

WORKSPACE = "/workspace"
COMMIT_SCRIPT = 'git add -A && git commit -q -m "$1" && git rev-parse HEAD'


def clone_target(repo: str, path: str | None) -> str:
    if path:
        return path if path.startswith("/") else posixpath.join(WORKSPACE, path)
    name = repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git") or "repo"
    return posixpath.join(WORKSPACE, name)


def checked(result: ExecResult, what: str, path: str) -> str:
    """git's stdout, or a GitError saying what failed and what git said."""
    if result.exit_code == 0 and not result.timed_out:
        return result.stdout
    said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
    reason = "timed out" if result.timed_out else f"exit {result.exit_code}"
    tail = " | ".join(said[-5:])
    hint = ""
    if "tell me who you are" in result.stderr.lower():
        hint = ("; create the box with git={'user_name': ..., 'user_email': ...} or run "
                "`git config user.name/user.email` in it")
    raise GitError(f"git {what} failed in {path} ({reason}): {tail}{hint}",
                   stderr=result.stderr, exit_code=result.exit_code)


def _branch(header: str) -> str | None:
    head = header.removeprefix("## ")
    for prefix in ("No commits yet on ", "Initial commit on "):
        if head.startswith(prefix):
            return head.removeprefix(prefix)
    if head.startswith("HEAD (no branch)"):
        return None
    return head.split("...", 1)[0].split(" ", 1)[0]


def parse_status(out: str) -> GitStatus:
    """`git status --porcelain=v1 --branch -z`: NUL-separated records; a rename or copy
    carries its source path as the next record."""
    records = out.split("\0")
    branch: str | None = None
    changes: list[GitChange] = []
    skip = False
    for record in records:
        if skip:
            skip = False
            continue
        if record.startswith("## "):
            branch = _branch(record)
        elif len(record) > 3:
            changes.append(GitChange(status=record[:2], path=record[3:]))
            skip = record[0] in "RC"
    return GitStatus(branch=branch, changes=changes)
