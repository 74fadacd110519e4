"""Background processes in a box: started, supervised and logged by its daemon, ended by a
freeze with their end recorded, started again on wake when their policy says so."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from boxes import BoxManager, BoxSpec, BoxState, ExecRequest
from boxes.errors import BoxFileError, BoxStateError, InvalidRequestError


async def settled(manager: BoxManager, box_id: str, process_id: str,
                  states: tuple[str, ...] = ("exited", "failed", "stopped"),
                  timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await manager.get_process(box_id, process_id)
        if found["state"] in states:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def all_logs(manager: BoxManager, box_id: str, process_id: str) -> tuple[str, str]:
    out, err, offsets = [], [], {"stdout": 0, "stderr": 0}
    while True:
        answer = await manager.process_logs(box_id, process_id, offsets["stdout"],
                                            offsets["stderr"])
        if not answer["stdout"]["data"] and not answer["stderr"]["data"]:
            return "".join(out), "".join(err)
        out.append(answer["stdout"]["data"])
        err.append(answer["stderr"]["data"])
        offsets = {k: answer[k]["next_offset"] for k in offsets}


async def test_a_process_outlives_its_request_and_its_output_and_exit_are_kept(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {
        "command": "echo out; echo err >&2; sleep 0.5; echo $PWD $LEVEL; exit 3",
        "cwd": "/tmp", "env": {"LEVEL": "call"}})
    assert started["id"].startswith("p_") and started["state"] == "running"
    assert isinstance(started["pid"], int)
    assert [p["id"] for p in await manager.list_processes(box.id)] == [started["id"]]
    ended = await settled(manager, box.id, started["id"])
    assert (ended["state"], ended["exit_code"], ended["pid"]) == ("exited", 3, None)
    assert ended["ended_at"] >= ended["started_at"]
    assert await all_logs(manager, box.id, started["id"]) == ("out\n/tmp call\n", "err\n")


async def test_a_missing_program_fails_with_the_reason_and_bad_input_is_refused(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {"command": ["no-such-program"]})
    ended = await settled(manager, box.id, started["id"])
    assert (ended["state"], ended["exit_code"]) == ("failed", 127)
    assert "no-such-program" in ended["error"]
    for spec in ({"command": ""}, {"command": "true", "restart": "always"},
                 {"command": "true", "env": {"A=B": "c"}}, {"command": "true", "stdin": "x"}):
        with pytest.raises(InvalidRequestError):
            await manager.start_process(box.id, spec)
    with pytest.raises(BoxFileError) as err:
        await manager.start_process(box.id, {"command": "true", "cwd": "/nope"})
    assert err.value.code == "not_found"
    for bad in ("p_../../etc", "../x", "p_aaaaaaaaaa"):
        with pytest.raises(BoxFileError) as err:
            await manager.get_process(box.id, bad)
        assert err.value.code == "not_found"


async def test_on_failure_restarts_with_a_growing_back_off_and_keeps_its_id(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {"command": "echo run; exit 1",
                                                   "restart": "on-failure"})
    await asyncio.sleep(3.6)  # runs at 0, ~1 s and ~3 s (back-off 1 s, then 2 s)
    found = await manager.get_process(box.id, started["id"])
    assert found["restarts"] == 2, found
    assert found["state"] in ("restarting", "running", "starting")
    out, _ = await all_logs(manager, box.id, started["id"])
    assert out == "run\n" * 3
    await manager.kill_process(box.id, started["id"])
    assert await manager.list_processes(box.id) == []


async def test_a_signal_reaches_the_command_and_its_children_and_ends_restarts(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {
        "command": "trap 'echo got TERM; kill $child; exit 0' TERM; sleep 300 & child=$!; wait",
        "restart": "on-failure"})
    await asyncio.sleep(0.3)
    await manager.signal_process(box.id, started["id"], "TERM")
    ended = await settled(manager, box.id, started["id"])
    assert (ended["state"], ended["exit_code"]) == ("exited", 0)
    assert (await all_logs(manager, box.id, started["id"]))[0] == "got TERM\n"
    r = await manager.exec(box.id, ExecRequest(command="pgrep -x sleep || echo none"))
    assert r.stdout == "none\n"
    with pytest.raises(BoxStateError):
        await manager.signal_process(box.id, started["id"], "TERM")
    with pytest.raises(InvalidRequestError):
        await manager.signal_process(box.id, started["id"], "SEGV")


async def test_stdin_takes_writes_until_closed(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {"command": "cat; echo done", "stdin": True})
    await manager.write_process(box.id, started["id"], b"hello ")
    await manager.write_process(box.id, started["id"], "wörld\n".encode(), eof=True)
    ended = await settled(manager, box.id, started["id"])
    assert ended["exit_code"] == 0
    assert (await all_logs(manager, box.id, started["id"]))[0] == "hello wörld\ndone\n"
    with pytest.raises(BoxStateError):
        await manager.write_process(box.id, started["id"], b"late")
    closed = await manager.start_process(box.id, {"command": "cat"})  # stdin is /dev/null
    assert (await settled(manager, box.id, closed["id"]))["exit_code"] == 0


async def test_follow_streams_output_as_it_is_written_then_the_exit(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {
        "command": "for i in 1 2 3; do echo $i; sleep 0.2; done; echo bye >&2; exit 5"})
    events = []
    times = []
    async for event in manager.follow_process(box.id, started["id"]):
        events.append(event)
        times.append(time.monotonic())
    assert events[0]["id"] == started["id"]  # the record first
    out = "".join(e["data"] for e in events[1:] if e.get("type") == "stdout")
    err = "".join(e["data"] for e in events[1:] if e.get("type") == "stderr")
    assert (out, err) == ("1\n2\n3\n", "bye\n")
    assert events[-1] == {"type": "exit", "state": "exited", "exit_code": 5}
    assert times[-1] - times[1] > 0.3  # streamed as it came, not all at the end
    # from an offset: what came after it
    tail = [e async for e in manager.follow_process(box.id, started["id"], stdout_offset=2)]
    assert "".join(e.get("data", "") for e in tail[1:] if e.get("type") == "stdout") == "2\n3\n"


async def test_logs_are_bounded_and_say_where_what_is_kept_starts(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {
        "command": "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo end"})
    await settled(manager, box.id, started["id"])
    r = await manager.exec(box.id, ExecRequest(
        command=f"du -b -c .burrow/processes/{started['id']}/stdout.* | tail -1"))
    kept = int(r.stdout.split()[0])
    assert 1 << 20 <= kept <= 2 << 20, kept
    answer = await manager.process_logs(box.id, started["id"])
    assert answer["stdout"]["offset"] == 5000005 - kept  # the oldest byte kept
    out, _ = await all_logs(manager, box.id, started["id"])
    assert out.endswith("a\nend\n") and len(out) == kept


async def test_kill_ends_the_process_group_and_forgets_it(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = await manager.start_process(box.id, {"command": "sleep 301 & sleep 302"})
    await asyncio.sleep(0.3)
    await manager.kill_process(box.id, started["id"])
    with pytest.raises(BoxFileError):
        await manager.get_process(box.id, started["id"])
    r = await manager.exec(box.id, ExecRequest(command="pgrep -x sleep || echo none; "
                                               "ls .burrow/processes"))
    assert r.stdout == "none\n"


async def test_the_number_of_processes_is_capped_and_an_ended_one_gives_way(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    first = await manager.start_process(box.id, {"command": "true"})
    await settled(manager, box.id, first["id"])
    running = [await manager.start_process(box.id, {"command": "sleep 300"})
               for _ in range(15)]
    newest = await manager.start_process(box.id, {"command": "sleep 300"})  # 17th: 1st goes
    ids = {p["id"] for p in await manager.list_processes(box.id)}
    assert first["id"] not in ids and newest["id"] in ids and len(ids) == 16
    with pytest.raises(BoxStateError) as err:
        await manager.start_process(box.id, {"command": "sleep 300"})
    assert "16" in err.value.message
    for proc in [*running, newest]:
        await manager.kill_process(box.id, proc["id"])


async def test_a_freeze_ends_processes_with_their_end_and_a_wake_starts_the_on_wake_ones(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    again = await manager.start_process(box.id, {
        "command": "echo up $$; exec sleep 300", "restart": "on-wake"})
    once = await manager.start_process(box.id, {"command": "sleep 300"})
    await asyncio.sleep(0.3)
    await manager.freeze(box.id)
    woken = await manager.wake(box.id)
    assert woken.state == BoxState.RUNNING
    found = await settled(manager, box.id, again["id"], ("running",))
    assert found["restarts"] == 0 and found["pid"] is not None
    stopped = await manager.get_process(box.id, once["id"])
    assert (stopped["state"], stopped["exit_code"]) == ("stopped", 143)  # SIGTERM at the freeze
    out, _ = await all_logs(manager, box.id, again["id"])
    assert out.count("up ") == 2  # its log goes on across the freeze
    await manager.kill_process(box.id, again["id"])


async def test_a_running_process_is_no_activity_for_the_idle_policy(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.start_process(box.id, {"command": "sleep 300"})
    await asyncio.sleep(0.2)
    health = await manager.health(box.id)
    assert health["execs"] == 0
    cooled = await manager.cool(box.id, BoxState.FROZEN, idle_since=time.time() + 1)
    assert cooled is not None and (await manager.get(box.id)).state == BoxState.FROZEN


async def test_a_record_the_box_wrote_itself_is_ignored(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.exec(box.id, ExecRequest(command=(
        "mkdir -p .burrow/processes/p_aaaaaaaaaa .burrow/processes/p_bbbbbbbbbb && "
        "echo '{not json' > .burrow/processes/p_aaaaaaaaaa/record.json && "
        "echo '{\"id\": \"p_bbbbbbbbbb\", \"argv\": [\"a\\u0000b\"], \"cwd\": \"/\", "
        "\"env\": {}, \"restart\": \"on-wake\", \"state\": \"running\"}' "
        "> .burrow/processes/p_bbbbbbbbbb/record.json")))
    await manager.freeze(box.id)
    await manager.wake(box.id)
    assert await manager.list_processes(box.id) == []
    started = await manager.start_process(box.id, {"command": "echo fine"})
    assert (await settled(manager, box.id, started["id"]))["exit_code"] == 0
