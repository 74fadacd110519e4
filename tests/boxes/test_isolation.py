"""Escape attempts from inside a box. Every one of them must fail."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from boxes import BoxManager, BoxSpec, ExecRequest, Limits, RuntimeConfig
from boxes.errors import BoxFileError, BoxUnavailableError


async def sh(manager: BoxManager, box_id: str, command: str, timeout_s: float = 60):
    return await manager.exec(box_id, ExecRequest(command=command, timeout_s=timeout_s))


async def test_host_secrets_and_directories_are_not_visible(
        manager: BoxManager, config: RuntimeConfig) -> None:
    box = await manager.create(BoxSpec())
    for path in ("/etc/shadow", "/etc/gshadow", "/root", str(config.data_dir),
                 str(config.run_dir), "/work", "/etc/ssh", "/etc/ssl/private",
                 "/proc/1/root/etc/shadow", "/sys/fs/cgroup/memory"):
        r = await sh(manager, box.id, f"test -e {path} && echo EXISTS; ls {path} 2>/dev/null")
        assert r.stdout == "", (path, r.stdout)
    assert (await sh(manager, box.id, "ls -A /home /mnt /srv")).stdout.split() == \
        ["/home:", "/mnt:", "/srv:"]  # the image's own empty directories, not the host's
    r = await sh(manager, box.id, "cat /etc/passwd")
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == ["root", "box", "nobody"]


async def test_a_box_is_never_host_root(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await sh(manager, box.id, "nohup sleep 30 > /dev/null 2>&1 &")
    pids = manager.backend.cgroups.open(box.id).pids()  # type: ignore[attr-defined]
    assert len(pids) >= 3  # bwrap, the daemon, sleep
    assert {_uid_of(str(pid)) for pid in pids} == {box.uid}  # as the host sees them
    r = await sh(manager, box.id, "grep -E '^Cap(Eff|Prm|Inh|Amb)' /proc/self/status")
    assert all(line.endswith("0000000000000000") for line in r.stdout.splitlines()), r.stdout
    # and none to be had: no_new_privs makes exec grant nothing (setuid bits and file
    # capabilities alike), whatever the bounding set of the namespace the code runs in
    r = await sh(manager, box.id, "grep '^NoNewPrivs' /proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "1"], r.stdout
    r = await sh(manager, box.id, "unshare -r true 2>&1; echo $?")
    assert r.stdout.strip().endswith("1")  # no nested user namespaces either


async def test_boxes_cannot_see_each_others_files_or_processes(manager: BoxManager) -> None:
    a = await manager.create(BoxSpec())
    b = await manager.create(BoxSpec())
    await sh(manager, a.id, "echo A-SECRET > /workspace/secret; "
                            "nohup sleep 300 > /dev/null 2>&1 &")
    r = await sh(manager, b.id, "find / -xdev -name secret 2>/dev/null; "
                                "grep -rs A-SECRET /tmp /workspace /run; ps -eo pid,comm")
    assert "A-SECRET" not in r.stdout and "/secret" not in r.stdout
    assert "sleep" not in r.stdout
    # Signalling everything it can reach kills only its own processes, its own daemon
    # included: the exec connection drops and the box is marked failed, then self-heals.
    with contextlib.suppress(BoxUnavailableError):
        await sh(manager, b.id, "kill -9 -1; true")
    r = await sh(manager, a.id, "pgrep -c sleep")
    assert r.stdout.strip() == "1"
    assert (await sh(manager, b.id, "echo back")).stdout == "back\n"


async def test_host_loopback_is_unreachable(manager: BoxManager, host_tcp_service: int) -> None:
    box = await manager.create(BoxSpec())
    probe = ("python3 -c \"import socket,sys\n"
             "for host in sys.argv[2:]:\n"
             "    try:\n"
             "        s = socket.create_connection((host, int(sys.argv[1])), timeout=2)\n"
             "        print('REACHED', host)\n"
             "    except OSError as e: print('no', host, e.errno)\" "
             f"{host_tcp_service} 127.0.0.1 10.0.2.2 ::1")
    r = await sh(manager, box.id, probe)
    assert "REACHED" not in r.stdout, r.stdout


async def test_writes_outside_the_layer_fail_and_touch_nothing_on_the_host(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    marker = f"burrow-escape-{box.id}"
    r = await sh(manager, box.id, f"for d in /usr /usr/lib /etc /bin /opt/burrow /proc/sys; do "
                                  f"echo x > $d/{marker} 2>/dev/null && echo WROTE $d; done; true")
    assert "WROTE" not in r.stdout
    for d in ("/usr", "/usr/lib", "/etc", "/bin", "/tmp", "/"):
        assert not Path(d, marker).exists()


async def test_file_api_resolves_paths_inside_the_box(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await sh(manager, box.id, "ln -s /etc/shadow shadow-link; ln -s /root root-link; "
                              "ln -s /usr/lib lib-link")
    for path in ("../../etc/shadow", "/workspace/../../../etc/shadow", "shadow-link",
                 "/proc/1/root/etc/shadow"):
        with pytest.raises(BoxFileError) as err:
            await manager.read_file(box.id, path)
        assert err.value.code in ("not_found", "permission_denied"), path
    with pytest.raises(BoxFileError):
        await manager.list_files(box.id, "root-link")
    with pytest.raises(BoxFileError):
        await manager.write_file(box.id, "lib-link/evil.so", b"x")
    assert not Path("/usr/lib/evil.so").exists()
    # what the box can read through ../ is its own filtered /etc, never the host's
    passwd = await manager.read_file(box.id, "../../etc/passwd")
    assert passwd.count(b"\n") == 3


async def test_memory_bomb_is_killed_inside_its_box_only(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(limits=Limits(memory_mb=96)))
    other = await manager.create(BoxSpec())
    r = await sh(manager, box.id, "python3 -c \"a=[]\nwhile True: a.append(b'x'*10**7)\"")
    assert r.exit_code == 137, (r.exit_code, r.stderr)
    assert (await sh(manager, box.id, "echo alive")).stdout == "alive\n"  # the daemon lives
    assert (await sh(manager, other.id, "echo fine")).stdout == "fine\n"


async def test_fork_bomb_is_capped_and_the_host_unaffected(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(limits=Limits(pids=64)))
    other = await manager.create(BoxSpec())
    r = await sh(manager, box.id, "bomb() { bomb | bomb & }; bomb; sleep 2; "
                                  "ls /proc | grep -c '^[0-9]'", timeout_s=20)
    count = sum(1 for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == box.uid)
    assert count <= 64 + 16
    assert (await sh(manager, other.id, "echo fine")).stdout == "fine\n"
    assert r.duration_ms < 20_000
    host = await asyncio.create_subprocess_exec("true")
    assert await host.wait() == 0  # the host can still fork


def _uid_of(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def test_disk_filling_is_bounded_by_the_box_quota(manager: BoxManager,
                                                        config: RuntimeConfig) -> None:
    box = await manager.create(BoxSpec(limits=Limits(disk_mb=128)))
    other = await manager.create(BoxSpec())
    host_free = os.statvfs(config.data_dir).f_bavail * os.statvfs(config.data_dir).f_frsize
    r = await sh(manager, box.id, "dd if=/dev/zero of=/workspace/fill bs=1M count=400 2>&1; "
                                  "df -m /workspace | tail -1")
    assert "No space left" in r.stdout or "File too large" in r.stdout, r.stdout
    used = int((await sh(manager, box.id, "du -sm /workspace/fill | cut -f1")).stdout)
    assert used <= 128
    assert (await sh(manager, other.id, "echo ok > f && cat f")).stdout == "ok\n"
    host_free_after = os.statvfs(config.data_dir).f_bavail * os.statvfs(config.data_dir).f_frsize
    assert host_free - host_free_after < 200 * 1024 * 1024
    # the box itself recovers once it frees space
    assert (await sh(manager, box.id, "rm fill && echo x > y && cat y")).stdout == "x\n"


async def test_a_box_cannot_redirect_the_host_to_another_socket(manager: BoxManager) -> None:
    """The daemon's socket is bound by the host outside the box, so the box has no path it
    could swap for a symlink to another box's socket (or any host socket)."""
    box = await manager.create(BoxSpec())
    other = await manager.create(BoxSpec())
    socket_path = Path(manager.backend.socket_path(box.id))
    st = os.lstat(socket_path)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    r = await sh(manager, box.id,
                 f"ls -A /run/burrow; ln -sf {manager.backend.socket_path(other.id)} "
                 "/run/burrow/daemon.sock 2>&1; ls /run/burrow")
    await sh(manager, other.id, "echo other > marker")
    assert (await sh(manager, box.id, "ls marker 2>&1; echo $BURROW_BOX_ID")).stdout.endswith(
        f"No such file or directory\n{box.id}\n")
    assert os.stat(manager.config.run_dir).st_mode & 0o777 == 0o711  # traversable, not listable
    assert r.exit_code == 0
