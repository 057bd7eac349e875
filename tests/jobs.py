"""Jobs (syncs.jobs) in tests: the messages a commit hands to the broker, recorded instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from syncs.sync_requests import SYNC_TASK


class Handed(list):
    """The messages handed over, in order."""

    def syncs(self) -> list[int]:
        """The connections whose sync was asked for."""
        return [message.args[0] for message in self if message.task == SYNC_TASK]


@contextmanager
def recorded_hand_over() -> Iterator[Handed]:
    handed = Handed()
    with mock.patch("syncs.jobs.hand_over", handed.append):
        yield handed
