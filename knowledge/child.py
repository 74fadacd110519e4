"""Helper processes that answer one request at a time on a pipe: the embedder and the name
detector run in them (`knowledge.embedder.ProcessEmbedder`, `knowledge.ner.ProcessNames`).

torch, spaCy and their models take hundreds of MB; in the gateway's process (`burrow serve`
runs the worker there) they would make every fork of it slower (a box start forks it: wakes
took twice as long) and compete with the event loop for the GIL.

    parent: Child.shared(argv).ask(message) -> answer     started on first use, one per argv
                                                          in this process, restarted once
                                                          when it died, closed at exit
            await off_loop(embedder.embed, texts)         from a coroutine: a call into a
                                                          child waits in the child's own
                                                          thread, never in the loop's pool
    child:  serve(handle)                                 python -m <module> ... calls it

Messages are length-prefixed pickles (both ends are this package, started by this process:
nothing else writes to the pipe). A child answers ("ok", value) or ("error", "Type: message");
`ask` raises `ChildError` for the latter, and the child serves on. A child ends when its stdin
closes, that is when its parent exits or closes it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import pickle
import signal
import struct
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar

T = TypeVar("T")

_HEADER = struct.Struct("!I")


class ChildError(ValueError):
    """The child could not answer this request (it serves on)."""


def read_message(stream: IO[bytes]) -> Any:
    """The next message on `stream`; EOFError when it ends before one is complete."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def write_message(stream: IO[bytes], message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


class Child:
    """The parent's side of one helper process (`argv`), shared by everyone in this process
    who asks for the same argv. Thread-safe: requests are serialised."""

    _shared: dict[tuple[str, ...], Child] = {}
    _shared_lock = threading.Lock()

    def __init__(self, argv: list[str], what: str) -> None:
        self.argv = list(argv)
        self.what = what  # for messages: "the embedding process"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._interrupted = False
        self._thread: ThreadPoolExecutor | None = None

    @classmethod
    def shared(cls, argv: list[str], what: str) -> Child:
        with cls._shared_lock:
            child = cls._shared.get(tuple(argv))
            if child is None:
                child = cls._shared[tuple(argv)] = cls(argv, what)
            return child

    def thread(self) -> ThreadPoolExecutor:
        """The one thread a coroutine's calls into this child wait in (`off_loop`): the child
        answers one at a time, so more would only wait on its lock."""
        with self._shared_lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="child")
            return self._thread

    def ask(self, message: Any) -> Any:
        """The child's answer to `message`. A child that died is replaced once per request."""
        with self._lock:
            self._interrupted = False
            for attempt in (1, 2):
                proc = self._running()
                try:
                    write_message(proc.stdin, message)  # type: ignore[arg-type]
                    answer = read_message(proc.stdout)  # type: ignore[arg-type]
                    break
                except (OSError, EOFError, ValueError):
                    self._stop()
                    if self._interrupted:
                        raise RuntimeError(f"{self.what} was stopped") from None
                    if attempt == 2:
                        raise RuntimeError(f"{self.what} exited twice in a row; see its error "
                                           "above in the log") from None
        status, value = answer
        if status != "ok":
            raise ChildError(f"{self.what} failed: {value}")
        return value

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is not None:
            self._stop()  # it died: close our ends of its pipes
        if self.proc is None:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        return self.proc

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._close_pipes()

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.proc = None

    def close(self) -> None:
        """Let the child finish and exit (it sees its stdin close); kill it after 10 s."""
        with self._lock:
            if self.proc is None:
                return
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._close_pipes()

    def interrupt(self) -> None:
        """Kill the child now, even in the middle of a request (a shutdown must not wait for a
        model to load): the request in flight fails instead of starting another child; the
        next request starts one."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self._interrupted = True
            with contextlib.suppress(OSError):
                proc.kill()

    @classmethod
    def interrupt_all(cls) -> None:
        for child in list(cls._shared.values()):
            child.interrupt()

    @classmethod
    def close_all(cls) -> None:
        for child in list(cls._shared.values()):
            child.close()


atexit.register(Child.close_all)


def serve(handle: Callable[[Any], Any]) -> None:
    """The child's loop: answer each message with `handle(message)` until stdin closes."""
    # Ctrl-C in `burrow serve`'s terminal reaches the whole process group: the server shuts
    # down, and this process ends when its stdin closes, without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers go to a private copy of stdout; anything a library prints goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = os.fdopen(0, "rb")
    while True:
        try:
            message = read_message(requests)
        except EOFError:
            return
        try:
            answer: tuple[str, Any] = ("ok", handle(message))
        except Exception as exc:  # the parent raises it; this process serves on
            answer = ("error", f"{type(exc).__name__}: {exc}")
        write_message(answers, answer)


async def off_loop(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` from a coroutine, off the event loop. A method of an object that fronts
    a helper process (its `child`) runs in that child's thread: a backlog of calls into one
    child (a burst of embeddings a host's boxes ask for) then waits there, one at a time,
    instead of taking every thread of the loop's default executor from the box operations
    that need one (a host under such a burst stopped freezing its boxes). Anything else runs
    in the default executor, as asyncio.to_thread would."""
    child = getattr(getattr(call, "__self__", None), "child", None)
    if isinstance(child, Child):
        return await asyncio.get_running_loop().run_in_executor(
            child.thread(), functools.partial(call, *args))
    return await asyncio.to_thread(call, *args)
