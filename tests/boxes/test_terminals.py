"""A terminal in a box (the daemon's `pty`): the box user's shell on a pty allocated inside the
box, with its size, keystrokes and exit; hanging up ends the shell; a freeze ends it with its
exit told."""

from __future__ import annotations

import asyncio

import pytest

from boxes import BoxFileError, BoxManager, BoxSpec, BoxState, ExecRequest
from boxes.terminals import Terminal


async def read_until(term: Terminal, needle: bytes, timeout_s: float = 20) -> bytes:
    """Output until `needle` shows (or the exit code, as bytes, if the shell ends first)."""
    seen = b""

    async def collect() -> bytes:
        nonlocal seen
        while needle not in seen:
            piece = await term.read()
            if isinstance(piece, int):
                return seen + b"<exit %d>" % piece
            seen += piece
        return seen

    return await asyncio.wait_for(collect(), timeout_s)


async def exit_code(term: Terminal, timeout_s: float = 20) -> int:
    async def drain() -> int:
        while True:
            piece = await term.read()
            if isinstance(piece, int):
                return piece

    return await asyncio.wait_for(drain(), timeout_s)


async def test_the_shell_runs_as_the_box_user_on_a_pty_of_the_box(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    term = await manager.open_terminal(box.id, cols=91, rows=17)
    try:
        assert term.shell in ("/bin/bash", "/bin/sh")
        await term.write(b"echo $((6*7)); stty size; echo $TERM; id -u; pwd; tty\n")
        out = await read_until(term, b"/dev/pts/")
        assert b"42" in out and b"17 91" in out and b"xterm-256color" in out
        uid = (await manager.exec(box.id, ExecRequest(command="id -u"))).stdout.strip()
        assert f"\n{uid}\n".encode() in out.replace(b"\r", b"") and b"/workspace" in out
        await term.resize(120, 40)
        await term.write(b"stty size\n")
        assert b"40 120" in await read_until(term, b"40 120")
        await term.write(b"exit 3\n")
        assert await exit_code(term) == 3
    finally:
        await term.close()
    await manager.delete(box.id)


async def test_cwd_is_inside_the_box_and_a_missing_one_is_refused(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.exec(box.id, ExecRequest(command="mkdir -p /workspace/proj"))
    term = await manager.open_terminal(box.id, 80, 24, cwd="proj")
    await term.write(b"pwd; exit\n")
    assert b"/workspace/proj" in await read_until(term, b"<exit")
    await term.close()
    with pytest.raises(BoxFileError) as missing:
        await manager.open_terminal(box.id, 80, 24, cwd="/nowhere")
    assert missing.value.code == "not_found"
    await manager.delete(box.id)


async def test_hanging_up_ends_the_shell_and_its_jobs_and_a_shell_deaf_to_it(
        manager: BoxManager) -> None:
    """SIGHUP to the shell's group: bash passes it to its jobs and ends; a shell that ignores
    it is killed 2 s later (its foreground job then hangs up as its session ends)."""
    box = await manager.create(BoxSpec())

    async def left(pattern: str) -> str:
        for _ in range(50):
            r = await manager.exec(box.id, ExecRequest(command=f"pgrep -a {pattern} || true"))
            if not r.stdout.strip():
                break
            await asyncio.sleep(0.2)
        return r.stdout.strip()

    term = await manager.open_terminal(box.id, 80, 24)
    await term.write(b"sleep 600 & sleep 601\n")
    assert "sleep 601" in await _running(manager, box.id, "sleep 601")
    await term.close()
    assert await left("-f 'sleep 60[01]'") == ""
    assert await left("-x bash") == ""

    term = await manager.open_terminal(box.id, 80, 24)
    await term.write(b"trap 'echo deaf' HUP; sleep 602\n")
    assert "sleep 602" in await _running(manager, box.id, "sleep 602")
    await term.close()
    assert await left("-f 'sleep 60[2]'") == ""
    assert await left("-x bash") == ""
    await manager.delete(box.id)


async def _running(manager: BoxManager, box_id: str, command: str) -> str:
    for _ in range(50):
        r = await manager.exec(box_id, ExecRequest(command=f"pgrep -af '{command}' || true"))
        if command in r.stdout:
            break
        await asyncio.sleep(0.1)
    return r.stdout


async def test_a_freeze_ends_the_shell_and_tells_its_exit(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    term = await manager.open_terminal(box.id, 80, 24)
    await term.write(b"echo ready\n")
    await read_until(term, b"ready\r\n")
    await manager.freeze(box.id)
    assert await exit_code(term) == 129  # SIGHUP
    await term.close()
    assert (await manager.get(box.id)).state == BoxState.FROZEN
    term = await manager.open_terminal(box.id, 80, 24)  # opening one wakes the box
    await term.write(b"exit 0\n")
    assert await exit_code(term) == 0
    await term.close()
    await manager.delete(box.id)
