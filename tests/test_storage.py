"""FileWriter: atomic writes in batches through a worker thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from esl_assets import storage
from esl_assets.storage import TEMP_SUFFIX, FileWriter


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def count_hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of each batch handed to the thread."""
    sizes: list[int] = []
    original = storage._write_files_in_thread

    async def counting(batch: list[Any]) -> list[OSError | None]:
        sizes.append(len(batch))
        return await original(batch)

    monkeypatch.setattr(storage, "_write_files_in_thread", counting)
    return sizes


def hold_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Make the thread set the first event at each batch, then wait for the
    second before writing."""
    started, go_on = threading.Event(), threading.Event()
    original = storage._write_files

    def held(batch: list[Any]) -> list[OSError | None]:
        started.set()
        go_on.wait(5)
        return original(batch)

    monkeypatch.setattr(
        storage, "_write_files_in_thread", storage.aiofiles.os.wrap(held)
    )
    return started, go_on


async def until_idle(writer: FileWriter) -> None:
    """Wait until the writer has settled every batch, for at most 5 s."""
    for _ in range(500):
        if writer._flusher is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer still has a batch after 5 s")


async def test_concurrent_writes_share_hand_offs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = count_hand_offs(monkeypatch)
    writer = FileWriter()
    contents = {
        tmp_path / f"file_{index}.png": bytes([index]) * 100 for index in range(50)
    }

    await asyncio.gather(*(writer.write(path, data) for path, data in contents.items()))

    for path, data in contents.items():
        assert path.read_bytes() == data
    assert listing(tmp_path) == sorted(p.name for p in contents)
    assert sum(sizes) == 50
    # All 50 were queued before the flusher first ran: one hand-off.
    assert sizes == [50]


async def test_one_failed_file_does_not_fail_its_batch(tmp_path: Path) -> None:
    writer = FileWriter()
    blocked = tmp_path / "blocked.png"
    blocked.mkdir()  # renaming a file onto a folder fails
    good = tmp_path / "good.png"

    results = await asyncio.gather(
        writer.write(good, b"one"),
        writer.write(blocked, b"two"),
        writer.write(tmp_path / "also_good.png", b"three"),
        return_exceptions=True,
    )

    assert results[0] is None
    assert isinstance(results[1], OSError)
    assert results[2] is None
    assert good.read_bytes() == b"one"
    assert blocked.is_dir()
    assert not [name for name in listing(tmp_path) if name.endswith(TEMP_SUFFIX)]


async def test_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "word.aac"
    path.write_bytes(b"old contents that are longer than the new ones")

    await FileWriter().write(path, b"new")

    assert path.read_bytes() == b"new"


async def test_cancelled_before_its_batch_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the first batch in the thread so that the second file waits.
    started, go_on = hold_batches(monkeypatch)
    writer = FileWriter()
    first = asyncio.create_task(writer.write(tmp_path / "first.png", b"1"))
    await asyncio.to_thread(started.wait, 5)
    second = asyncio.create_task(writer.write(tmp_path / "second.png", b"2"))
    await asyncio.sleep(0)

    second.cancel()
    go_on.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await until_idle(writer)

    assert (tmp_path / "first.png").read_bytes() == b"1"
    assert not (tmp_path / "second.png").exists()
    assert listing(tmp_path) == ["first.png"]


async def test_cancelled_mid_batch_keeps_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, go_on = hold_batches(monkeypatch)
    writer = FileWriter()
    task = asyncio.create_task(writer.write(tmp_path / "word.aac", b"whole"))
    await asyncio.to_thread(started.wait, 5)

    task.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until_idle(writer)

    assert (tmp_path / "word.aac").read_bytes() == b"whole"
    assert listing(tmp_path) == ["word.aac"]


async def test_writer_is_reused_after_going_idle(tmp_path: Path) -> None:
    writer = FileWriter()
    await writer.write(tmp_path / "a.png", b"a")
    await asyncio.sleep(0)
    await writer.write(tmp_path / "b.png", b"b")

    assert (tmp_path / "a.png").read_bytes() == b"a"
    assert (tmp_path / "b.png").read_bytes() == b"b"
