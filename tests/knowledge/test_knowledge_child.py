"""The helper-process protocol behind the embedder and the name detector (`knowledge.child`)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from knowledge.child import Child, ChildError, off_loop

_DIVIDER = "from knowledge.child import serve; serve(lambda m: 100 // m)"


def test_a_child_answers_raises_its_errors_and_serves_on_and_is_replaced_once_killed() -> None:
    child = Child([sys.executable, "-c", _DIVIDER], "the divider")
    try:
        assert child.ask(4) == 25
        with pytest.raises(ChildError, match="the divider failed: ZeroDivisionError"):
            child.ask(0)
        first = child.proc
        assert first is not None and child.ask(5) == 20 and child.proc is first
        first.kill()
        first.wait()
        assert child.ask(10) == 10 and child.proc is not first
    finally:
        child.close()
    assert child.proc is None


def test_children_are_shared_per_command_line() -> None:
    argv = [sys.executable, "-c", _DIVIDER]
    assert Child.shared(argv, "a") is Child.shared(list(argv), "b")
    assert Child.shared([*argv, "other"], "c") is not Child.shared(argv, "a")


def test_a_child_that_cannot_start_its_work_is_reported_after_a_second_try() -> None:
    child = Child([sys.executable, "-c", "raise SystemExit(3)"], "the broken helper")
    try:
        with pytest.raises(RuntimeError, match="the broken helper exited twice in a row"):
            child.ask(1)
    finally:
        child.close()


def test_an_interrupted_request_fails_at_once_and_the_next_starts_a_child() -> None:
    """A shutdown while a model loads (burrow serve stopped seconds after it started) must not
    wait for the load: the request in flight fails, no second child starts for it."""
    slow = ("import sys, time\nfrom knowledge.child import serve\n"
            "time.sleep(float(sys.argv[1]))\nserve(lambda m: m * 2)")
    child = Child([sys.executable, "-c", slow, "60"], "the slow loader")
    failed: list[BaseException] = []

    def ask() -> None:
        try:
            child.ask(1)
        except BaseException as exc:
            failed.append(exc)

    try:
        asking = threading.Thread(target=ask)
        asking.start()
        deadline = time.monotonic() + 10
        while child.proc is None and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        child.interrupt()
        asking.join(10)
        assert not asking.is_alive() and time.monotonic() - started < 5
        assert len(failed) == 1 and "the slow loader was stopped" in str(failed[0])
        assert child.proc is None  # no replacement started for the interrupted request
        child.argv[-1] = "0"
        assert child.ask(21) == 42  # the next request starts a child
    finally:
        child.close()


_SLEEPER = "import time; from knowledge.child import serve; serve(lambda s: time.sleep(s) or s)"


@dataclass
class _Front:
    """An object that fronts a helper process, as ProcessEmbedder does."""
    child: Child

    def ask(self, seconds: float) -> float:
        return float(self.child.ask(seconds))


async def test_a_backlog_of_calls_into_a_child_leaves_the_loops_threads_to_others() -> None:
    """30 calls of 0.1 s into one child (served one at a time) while the loop's default
    executor is needed for something else: it runs at once, not after the backlog."""
    front = _Front(Child([sys.executable, "-c", _SLEEPER], "the sleeper"))
    try:
        await off_loop(front.ask, 0.0)  # started
        backlog = [asyncio.create_task(off_loop(front.ask, 0.1)) for _ in range(30)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await asyncio.to_thread(lambda: "other work") == "other work"
        assert time.monotonic() - started < 1.0  # behind the backlog it would take ~3 s
        assert await asyncio.gather(*backlog) == [0.1] * 30
    finally:
        front.child.close()
