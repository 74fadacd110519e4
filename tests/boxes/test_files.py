"""File operations through the box daemon, resolved inside the box's own view."""

from __future__ import annotations

import pytest

from boxes import BoxManager, BoxSpec, ExecRequest
from boxes.errors import BoxFileError


async def test_write_read_list_delete_roundtrip(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    payload = bytes(range(256)) * 1000
    await manager.write_file(box.id, "/workspace/dir/deep/data.bin", payload)
    assert await manager.read_file(box.id, "dir/deep/data.bin") == payload
    entries = await manager.list_files(box.id, "/workspace/dir/deep")
    assert [(e.name, e.type, e.size) for e in entries] == [("data.bin", "file", len(payload))]
    await manager.delete_file(box.id, "/workspace/dir", recursive=True)
    with pytest.raises(BoxFileError) as err:
        await manager.read_file(box.id, "dir/deep/data.bin")
    assert err.value.code == "not_found"


async def test_written_files_are_visible_to_commands_and_back(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "script.sh", b"echo hello from file\n", mode=0o755)
    r = await manager.exec(box.id, ExecRequest(command="./script.sh > out.txt; ls -l script.sh"))
    assert r.stdout.startswith("-rwxr-xr-x")
    assert await manager.read_file(box.id, "out.txt") == b"hello from file\n"


async def test_errors_name_the_problem(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.mkdir(box.id, "d")
    await manager.write_file(box.id, "d/f", b"x")
    cases = [
        (manager.read_file(box.id, "missing"), "not_found"),
        (manager.read_file(box.id, "d"), "is_a_directory"),
        (manager.delete_file(box.id, "d"), "not_empty"),
        (manager.list_files(box.id, "d/f"), "not_a_directory"),
        (manager.write_file(box.id, "/usr/evil", b"x"), "permission_denied"),
    ]
    for call, code in cases:
        with pytest.raises(BoxFileError) as err:
            await call
        assert err.value.code in (code, "read_only"), (code, err.value.message)


async def test_empty_file_roundtrip(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "empty", b"")
    assert await manager.read_file(box.id, "empty") == b""
