"""The stored text of instants: fixed width, UTC, microseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from schoolmon.server.clock import from_storage, to_storage


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (datetime(2026, 12, 4, 10, 0, tzinfo=UTC), "2026-12-04T10:00:00.000000Z"),
        (
            datetime(2026, 12, 4, 17, 0, 5, 120, tzinfo=timezone(timedelta(hours=7))),
            "2026-12-04T10:00:05.000120Z",
        ),
        (datetime(999, 1, 2, tzinfo=UTC), "0999-01-02T00:00:00.000000Z"),
    ],
)
def test_stored_text_is_fixed_width_utc(instant: datetime, text: str):
    """Any zone is written in UTC, with all six digits of microseconds."""
    assert to_storage(instant) == text
    assert from_storage(text) == instant


def test_naive_instant_is_refused():
    """A datetime without zone names itself in the error."""
    with pytest.raises(ValueError, match="naive datetime"):
        to_storage(datetime(2026, 12, 4))
