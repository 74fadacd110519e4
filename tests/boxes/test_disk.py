"""Box disk images across filesystems: a template on one filesystem, images on another."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from boxes import disk


@pytest.fixture
def tmpfs_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="burrow-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "testdisk", str(path)],
                   check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)
    path.rmdir()


@pytest.mark.boxes
def test_a_sparse_copy_across_filesystems_keeps_data_and_holes(
        tmpfs_dir: Path, tmp_path: Path) -> None:
    src = tmpfs_dir / "template.img"
    with open(src, "wb") as f:
        f.truncate(32 * 1024 * 1024)
        for offset in (0, 5 * 1024 * 1024, 31 * 1024 * 1024):
            f.seek(offset)
            f.write(os.urandom(64 * 1024))
    dst = tmp_path / "box.img"  # on the disk, another filesystem than the tmpfs
    assert os.stat(tmp_path).st_dev != os.stat(tmpfs_dir).st_dev
    disk._sparse_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 < 1024 * 1024  # 192 KiB of data, not 32 MiB


@pytest.mark.boxes
def test_new_disk_images_come_from_templates_in_the_data_dir(tmp_path: Path) -> None:
    images = disk.DiskImages(tmp_path / "data" / "disk-templates")
    image = tmp_path / "data" / "boxes" / "b_1" / "disk.img"
    images.create(image, 64)
    assert image.stat().st_size == 64 * 1024 * 1024
    assert image.stat().st_blocks * 512 < 8 * 1024 * 1024


@pytest.mark.boxes
def test_boxes_created_at_once_share_a_template_made_once(tmp_path: Path) -> None:
    """The first boxes of a data dir are often created together (a fan-out): each thread may
    format the missing template, and every image comes out whole."""
    images = disk.DiskImages(tmp_path / "disk-templates")
    targets = [tmp_path / "boxes" / f"b_{i}" / "disk.img" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda image: images.create(image, 64), targets))
    assert [t.stat().st_size for t in targets] == [64 * 1024 * 1024] * 6
    assert [p.name for p in (tmp_path / "disk-templates").iterdir()] == ["ext4-64m.img"]
    for target in targets:
        check = subprocess.run(["e2fsck", "-n", "-f", str(target)], capture_output=True)
        assert check.returncode == 0, check.stdout
