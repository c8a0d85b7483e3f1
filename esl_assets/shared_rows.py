"""One pass over the dictionary, shared by the lanes of a local build.

Reading and cleaning the rows costs more than planning their jobs, so the
audio and image lanes read one stream instead of a pass each. Each lane
keeps its own position in it. The rows between the slowest and the fastest
lane wait in a buffer. When that buffer grows past ``max_lead`` rows, the
slowest lane leaves the shared stream and reads the dictionary again on its
own, skipping the rows it already has. So a lane that waits for slow
requests never holds up the other lane, and the buffer stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from .rows import RejectedRow, Row

Item = Row | RejectedRow

#: Rows the fastest reader may be ahead of the slowest before the slowest
#: leaves the shared stream (each buffered row takes an estimated 600 bytes).
MAX_LEAD_ROWS = 20_000


class SharedRows:
    """A row stream that several readers consume at their own pace.

    ``open_rows`` starts a new pass over the same rows. It is called once
    for the shared stream and once for each reader that falls behind.
    """

    def __init__(
        self,
        open_rows: Callable[[], Iterator[Item]],
        readers: int,
        max_lead: int = MAX_LEAD_ROWS,
    ) -> None:
        self._open_rows = open_rows
        self._max_lead = max_lead
        self._source: Iterator[Item] | None = None
        self._exhausted = False
        #: The error the shared pass raised, raised again to every reader.
        self._error: BaseException | None = None
        self._buffer: deque[Item] = deque()
        #: Stream index of ``_buffer[0]``.
        self._start = 0
        #: Stream index of each attached reader's next row.
        self._positions: dict[int, int] = {index: 0 for index in range(readers)}
        #: Stream index at which each detached reader left the shared stream.
        self._detached_at: dict[int, int] = {}

    def reader(self, index: int) -> Iterator[Item]:
        """Yield every row for reader ``index`` (0 to ``readers - 1``)."""
        try:
            while True:
                position = self._positions.get(index)
                if position is None:
                    # This reader fell behind and left the shared stream.
                    yield from self._private_pass(self._detached_at[index])
                    return
                item = self._item_at(position)
                if item is None:
                    return
                self._positions[index] = position + 1
                self._trim()
                yield item
        finally:
            self._positions.pop(index, None)
            self._trim()

    def lead(self, index: int) -> int:
        """Return how many rows reader ``index`` is ahead of the slowest one."""
        position = self._positions.get(index)
        if position is None:
            return 0
        return position - min(self._positions.values())

    def _item_at(self, position: int) -> Item | None:
        offset = position - self._start
        if offset < len(self._buffer):
            return self._buffer[offset]
        if self._error is not None:
            raise self._error
        if self._exhausted:
            return None
        try:
            if self._source is None:
                self._source = self._open_rows()
            item = next(self._source)
        except StopIteration:
            self._exhausted = True
            return None
        except Exception as error:
            self._error = error
            raise
        self._buffer.append(item)
        if len(self._buffer) > self._max_lead:
            self._detach_slowest()
        return item

    def _detach_slowest(self) -> None:
        if len(self._positions) < 2:
            return
        slowest = min(self._positions, key=self._positions.__getitem__)
        self._detached_at[slowest] = self._positions.pop(slowest)
        self._trim()

    def _trim(self) -> None:
        """Drop the rows every attached reader has passed."""
        if not self._positions:
            self._start += len(self._buffer)
            self._buffer.clear()
            self._close_source()
            return
        keep_from = min(self._positions.values())
        while self._start < keep_from and self._buffer:
            self._buffer.popleft()
            self._start += 1

    def _close_source(self) -> None:
        # Close the reader now and in this thread. Left to the garbage
        # collector, a SQLite reader may be finalized in another thread,
        # where sqlite3 raises ProgrammingError.
        source, self._source = self._source, None
        close = getattr(source, "close", None)
        if close is not None:
            close()

    def _private_pass(self, skip: int) -> Iterator[Item]:
        rows = self._open_rows()
        try:
            for index, item in enumerate(rows):
                if index >= skip:
                    yield item
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
