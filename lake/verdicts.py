"""One verdict per row: kept, or quarantined with the first reason that applies.

Reasons are checked in a fixed order, so a row that is wrong in two ways is always reported
the same way, and every row is counted exactly once.
"""

from typing import Final

import numpy as np
import pandas as pd

from lake.parse import TEXT

MALFORMED_ROW: Final = "malformed_row"
MISSING_ID: Final = "missing_id"
UNPARSEABLE_TIMESTAMP: Final = "unparseable_timestamp"
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
DROPPED_EVENT_TYPE: Final = "dropped_event_type"
INVALID_VALUE: Final = "invalid_value"
NEGATIVE_PRICE: Final = "negative_price"
IMPOSSIBLE_PRICE: Final = "impossible_price"
IMPLAUSIBLE_AGE: Final = "implausible_age"
TEST_ACCOUNT: Final = "test_account"
BULK_RESELLER: Final = "bulk_reseller"
DUPLICATE: Final = "duplicate"
DUPLICATE_ID: Final = "duplicate_id"

REASONS: Final = (
    MALFORMED_ROW,
    MISSING_ID,
    UNPARSEABLE_TIMESTAMP,
    UNKNOWN_EVENT_TYPE,
    DROPPED_EVENT_TYPE,
    INVALID_VALUE,
    NEGATIVE_PRICE,
    IMPOSSIBLE_PRICE,
    IMPLAUSIBLE_AGE,
    TEST_ACCOUNT,
    BULK_RESELLER,
    DUPLICATE,
    DUPLICATE_ID,
)


class Verdicts:
    """Reasons per row position; a row keeps the first reason it is given."""

    def __init__(self, n_rows: int) -> None:
        self.reason = np.full(n_rows, None, dtype=object)
        self.detail = np.full(n_rows, None, dtype=object)
        # rows whose parsed time lost digits finer than the lake holds: column -> row mask
        self.truncated: dict[str, np.ndarray] = {}

    @property
    def accepted(self) -> np.ndarray:
        return np.equal(self.reason, None)

    def reject(
        self, mask: pd.Series | np.ndarray, reason: str, detail: str | pd.Series | None = None
    ) -> None:
        """Give ``reason`` to the rows in ``mask`` that have none yet.

        ``detail`` may be a Series indexed by row position holding (at least) the rows in
        ``mask``, so that per-row messages are only built for the few rows that fail.
        """
        hits = np.asarray(mask, dtype=bool) & self.accepted
        if not hits.any():
            return
        self.reason[hits] = reason
        if isinstance(detail, pd.Series):
            self.detail[hits] = detail.reindex(np.flatnonzero(hits)).to_numpy(dtype=object)
        else:
            self.detail[hits] = detail


def describe_values(column: str, raw: pd.Series, problem: str) -> pd.Series:
    """Row details such as ``price='abc': not a number``; pass only the failing rows."""
    return column + "=" + raw.astype(TEXT).fillna("<null>").map(repr) + ": " + problem
