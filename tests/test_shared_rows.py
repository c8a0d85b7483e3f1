"""One dictionary pass shared by the lanes: order, bounded buffer, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.rows import RejectedRow, Row
from esl_assets.shared_rows import SharedRows


def make_rows(count: int) -> list[Row | RejectedRow]:
    return [Row(uuid=f"u{number}", word=f"word{number}") for number in range(count)]


class CountingSource:
    """Opens passes over fixed rows and counts them."""

    def __init__(self, rows: list[Row | RejectedRow]) -> None:
        self.rows = rows
        self.passes = 0

    def __call__(self) -> Iterator[Row | RejectedRow]:
        self.passes += 1
        return iter(self.rows)


def test_readers_in_step_share_one_pass() -> None:
    source = CountingSource(make_rows(50))
    shared = SharedRows(source, 2, max_lead=5)
    first, second = shared.reader(0), shared.reader(1)
    seen: tuple[list[Row | RejectedRow], list[Row | RejectedRow]] = ([], [])
    for a, b in zip(first, second, strict=True):
        seen[0].append(a)
        seen[1].append(b)
    assert seen[0] == source.rows
    assert seen[1] == source.rows
    assert source.passes == 1


def test_lagging_reader_reads_again_from_its_position() -> None:
    source = CountingSource(make_rows(30))
    shared = SharedRows(source, 2, max_lead=5)
    slow = shared.reader(1)
    slow_rows = [next(slow), next(slow)]
    fast = list(shared.reader(0))
    assert fast == source.rows
    assert source.passes == 1
    assert shared.lead(0) == 0
    slow_rows += list(slow)
    assert slow_rows == source.rows
    assert source.passes == 2


def test_buffer_never_exceeds_max_lead() -> None:
    source = CountingSource(make_rows(100))
    shared = SharedRows(source, 2, max_lead=7)
    fast = shared.reader(0)
    _ = next(shared.reader(1))
    for _item in fast:
        assert shared.lead(0) <= 7


def test_reader_closed_early_releases_rows() -> None:
    source = CountingSource(make_rows(40))
    shared = SharedRows(source, 2, max_lead=100)
    stopped = shared.reader(1)
    next(stopped)
    stopped.close()
    assert list(shared.reader(0)) == source.rows
    assert shared.lead(0) == 0


def test_error_reaches_every_reader() -> None:
    def failing() -> Iterator[Row | RejectedRow]:
        yield Row(uuid="u0", word="word0")
        raise DictionaryError("line 2 is broken")

    shared = SharedRows(failing, 2)
    first, second = shared.reader(0), shared.reader(1)
    assert next(first) == Row(uuid="u0", word="word0")
    assert next(second) == Row(uuid="u0", word="word0")
    with pytest.raises(DictionaryError, match="line 2"):
        next(first)
    with pytest.raises(DictionaryError, match="line 2"):
        next(second)
