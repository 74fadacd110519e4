"""Running commands in a box through its daemon."""

from __future__ import annotations

import asyncio
import time

import pytest

from boxes import BoxManager, BoxSpec, ExecRequest, InvalidRequestError
from boxes.errors import BoxFileError


async def test_string_command_runs_in_sh_as_the_box_user_in_workspace(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(command="id -un; pwd; echo $HOME; exit 3"))
    assert r.exit_code == 3
    assert r.stdout.split() == ["box", "/workspace", "/workspace"]
    assert not r.timed_out


async def test_argv_command_is_not_shell_interpreted(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(command=["echo", "$HOME", "a;b"]))
    assert r.stdout == "$HOME a;b\n"


async def test_cwd_env_and_stdin_are_passed(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(env={"BOX_LEVEL": "box"}))
    await manager.mkdir(box.id, "/workspace/sub")
    r = await manager.exec(box.id, ExecRequest(
        command="pwd; echo $BOX_LEVEL $CALL_LEVEL; cat", cwd="sub",
        env={"CALL_LEVEL": "call"}, stdin="from stdin"))
    assert r.stdout == "/workspace/sub\nbox call\nfrom stdin"


async def test_stderr_is_kept_apart_from_stdout(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(command="echo out; echo err >&2"))
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


async def test_missing_program_exits_127_with_a_message(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(command=["no-such-program"]))
    assert r.exit_code == 127
    assert "no-such-program" in r.stderr


async def test_bad_cwd_is_a_clear_error(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    with pytest.raises(BoxFileError) as err:
        await manager.exec(box.id, ExecRequest(command="true", cwd="/nope"))
    assert err.value.code == "not_found"
    assert "/nope" in err.value.message


async def test_timeout_kills_the_command_and_says_so(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(command="echo start; sleep 30", timeout_s=0.5))
    assert r.timed_out
    assert r.exit_code == 137
    assert r.stdout == "start\n"
    assert r.duration_ms < 5000


async def test_background_children_do_not_hold_the_exec_open(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await asyncio.wait_for(
        manager.exec(box.id, ExecRequest(command="sleep 20 & echo started")), 5)
    assert r.stdout == "started\n"
    assert r.exit_code == 0


async def test_stream_yields_output_as_it_happens_then_the_exit(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    seen: list[tuple[str, str | None]] = []
    async for event in manager.exec_stream(
            box.id, ExecRequest(command="echo one; sleep 0.3; echo two >&2; exit 4")):
        seen.append((event.type, event.data if event.type != "exit" else str(event.exit_code)))
    assert seen == [("stdout", "one\n"), ("stderr", "two\n"), ("exit", "4")]


async def test_a_stream_left_early_ends_a_silent_command_at_once(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    stream = manager.exec_stream(box.id, ExecRequest(
        command="echo started; exec sleep 300", timeout_s=600))
    first = await anext(stream)
    assert (first.type, first.data) == ("stdout", "started\n")
    await stream.aclose()  # the client hangs up; the command prints nothing more
    deadline = time.monotonic() + 10
    processes = "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
    while "sleep 300" in (await manager.exec(box.id, ExecRequest(command=processes))).stdout:
        assert time.monotonic() < deadline, "the command outlived its client"
        await asyncio.sleep(0.2)


async def test_large_and_binary_output_survives(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(
        command="python3 -c \"import sys; sys.stdout.write('x' * 3_000_000)\"; "
                "printf '\\377\\376ok'", max_output=4_000_000))
    assert len(r.stdout) == 3_000_000 + 4 and not r.truncated
    assert r.stdout.endswith("\ufffd\ufffdok")


async def test_invalid_commands_are_rejected(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    for bad in ("", [], [1, 2]):
        with pytest.raises(InvalidRequestError):
            await manager.exec(box.id, ExecRequest(command=bad))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        await manager.exec(box.id, ExecRequest(command="true", timeout_s=-1))


async def test_python_and_node_runtimes_work(manager: BoxManager) -> None:
    py = await manager.create(BoxSpec(runtime="python"))
    r = await manager.exec(py.id, ExecRequest(
        command="python3 -m venv v && v/bin/python -c 'import sys; print(sys.prefix)' && "
                "python3 -m pip --version"))
    assert r.exit_code == 0, r.stderr
    assert "/workspace/v" in r.stdout
    node = await manager.create(BoxSpec(runtime="node"))
    r = await manager.exec(node.id, ExecRequest(command="node -e 'console.log(6*7)'; npm -v"))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == "42"
