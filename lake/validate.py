"""Type conversion and rule checks for each contract table, row by row, with reasons.

The checks run in the order of ``verdicts.REASONS``; the result is a typed, clean table and
the rejected rows with their original values, so nothing is lost or silently altered.
"""

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lake import parse
from lake import verdicts as r
from lake.mapping import Mapping
from lake.parse import TEXT
from lake.readers import RawTable
from lake.rules import IngestRules
from lake.tables import EVENTS_SPEC, PRODUCTS_SPEC, USERS_SPEC, TableSpec
from lake.verdicts import Verdicts, describe_values
from recsys import columns as c

logger = logging.getLogger(__name__)

BOOKKEEPING = (c.SOURCE_FILE, c.SOURCE_ROW)


@dataclass
class Checked:
    """One table after validation: rows kept (typed) and rows quarantined (as they came)."""

    name: str
    kept: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    files: list[str]
    extra_columns: list[str]
    truncated: dict[str, int] = field(default_factory=dict)  # kept rows cut to the microsecond


def _convert(
    frame: pd.DataFrame, spec: TableSpec, rules: IngestRules, v: Verdicts, priority: tuple[str, ...]
) -> dict[str, pd.Series]:
    """Parse the columns of the kinds in ``priority`` order, rejecting what does not parse."""
    earliest = pd.Timestamp(rules.earliest_timestamp, tz="UTC")
    latest = pd.Timestamp(rules.latest_timestamp, tz="UTC")
    typed: dict[str, pd.Series] = {}
    data_columns = [col for col in frame.columns if col not in BOOKKEEPING]
    for kind in priority:
        for col in data_columns:
            if spec.kinds.get(col, "text") != kind:
                continue
            raw = frame[col]
            if kind == "id":
                typed[col] = parse.parse_text(raw)
                v.reject(typed[col].isna(), r.MISSING_ID, f"{col} is empty")
            elif kind == "timestamp":
                typed[col], bad = parse.parse_timestamp(raw, earliest, latest)
                typed[col], cut = parse.to_microseconds(typed[col])
                if cut.any():
                    v.truncated[col] = cut.to_numpy()
                if col in spec.required:
                    bad = bad | ~parse.present(raw)
                v.reject(
                    bad,
                    r.UNPARSEABLE_TIMESTAMP,
                    describe_values(
                        col,
                        raw[bad],
                        f"not ISO 8601 or epoch seconds/ms in "
                        f"[{rules.earliest_timestamp}, {rules.latest_timestamp})",
                    ),
                )
            elif kind in ("float", "int", "bool"):
                converter = {
                    "float": parse.parse_float,
                    "int": parse.parse_int,
                    "bool": parse.parse_bool,
                }[kind]
                typed[col], bad = converter(raw)
                expected = {
                    "float": "not a number",
                    "int": "not a whole number",
                    "bool": "not true/false",
                }[kind]
                v.reject(bad, r.INVALID_VALUE, describe_values(col, raw[bad], expected))
            else:
                typed[col] = parse.parse_text(raw)
    return typed


def _check_prices(typed: dict[str, pd.Series], rules: IngestRules, v: Verdicts) -> None:
    if c.PRICE not in typed:
        return
    price = typed[c.PRICE]
    negative = (price < 0).fillna(False)
    v.reject(negative, r.NEGATIVE_PRICE, describe_values(c.PRICE, price[negative], "negative"))
    impossible = (price > rules.price.max_price).fillna(False)
    if rules.price.zero_is_impossible:
        impossible |= (price == 0).fillna(False)
    v.reject(
        impossible,
        r.IMPOSSIBLE_PRICE,
        describe_values(
            c.PRICE, price[impossible], f"zero or above max_price {rules.price.max_price:g}"
        ),
    )


def _check_test_accounts(ids: pd.Series, rules: IngestRules, v: Verdicts) -> None:
    pattern = re.compile(rules.test_account_pattern)
    unique = pd.Series(ids.dropna().unique())
    flagged = set(unique[unique.map(lambda s: bool(pattern.search(s)))])
    if flagged:
        v.reject(
            ids.isin(flagged).to_numpy(),
            r.TEST_ACCOUNT,
            f"user_id matches test_account_pattern {rules.test_account_pattern!r}",
        )


def _check_duplicates(typed: dict[str, pd.Series], v: Verdicts, key: str | None) -> None:
    """Exact repeats go; with ``key``, earlier versions of the same id go too (last one wins)."""
    frame = pd.DataFrame(typed)
    accepted = v.accepted
    live = frame[accepted]
    repeated = np.zeros(len(frame), dtype=bool)
    repeated[np.flatnonzero(accepted)[live.duplicated(keep="first").to_numpy()]] = True
    v.reject(repeated, r.DUPLICATE, "exact repeat of an earlier row")
    if key is not None:
        accepted = v.accepted
        live = frame.loc[accepted, key]
        superseded = np.zeros(len(frame), dtype=bool)
        superseded[np.flatnonzero(accepted)[live.duplicated(keep="last").to_numpy()]] = True
        v.reject(superseded, r.DUPLICATE_ID, f"{key} appears again later; the last row is kept")


def _check_resellers(typed: dict[str, pd.Series], rules: IngestRules, v: Verdicts) -> None:
    """A user buying warehouse quantities, or more orders a day than a person would, resells."""
    users, quantity = typed[c.USER_ID], typed.get(c.QUANTITY)
    accepted = v.accepted
    flagged: set[str] = set()
    if quantity is not None:
        bulk = accepted & (quantity > rules.reseller.max_quantity).fillna(False).to_numpy()
        flagged |= set(users[bulk])
    purchase = accepted & (typed[c.EVENT_TYPE] == c.PURCHASE).fillna(False).to_numpy()
    if purchase.any():
        days = typed[c.TIMESTAMP][purchase].dt.floor("D")
        counts = pd.DataFrame({"u": users[purchase], "d": days}).value_counts()
        flagged |= set(
            counts[counts > rules.reseller.max_purchases_per_day].index.get_level_values(0)
        )
    if flagged:
        v.reject(
            users.isin(flagged).to_numpy(),
            r.BULK_RESELLER,
            f"quantity above {rules.reseller.max_quantity} or more than "
            f"{rules.reseller.max_purchases_per_day} purchases in a day",
        )


def _event_types(
    typed: dict[str, pd.Series], raw: pd.Series, mapping: Mapping, v: Verdicts
) -> None:
    names = typed[c.EVENT_TYPE].str.lower()
    renamed = names.map(mapping.event_types)
    names = renamed.where(renamed.notna(), names).astype(TEXT)
    typed[c.EVENT_TYPE] = names
    dropped = names.isin(mapping.drop_event_types).fillna(False).to_numpy()
    v.reject(dropped, r.DROPPED_EVENT_TYPE, "event type dropped by the mapping file")
    unknown = ~names.isin(c.EVENT_TYPES).fillna(False).to_numpy()
    v.reject(
        unknown,
        r.UNKNOWN_EVENT_TYPE,
        describe_values(
            c.EVENT_TYPE, raw[unknown], f"not one of {', '.join(c.EVENT_TYPES)} (map or drop it)"
        ),
    )


def _finish(raw: RawTable, spec: TableSpec, typed: dict[str, pd.Series], v: Verdicts) -> Checked:
    frame = raw.frame
    accepted = v.accepted
    ordered = spec.order + sorted(col for col in typed if col not in spec.kinds)
    kept = pd.DataFrame({col: typed[col][accepted] for col in ordered if col in typed})
    sort_cols = [col for col in spec.sort_by if col in kept.columns]
    kept = kept.sort_values(sort_cols, kind="stable").reset_index(drop=True)
    rejected = ~accepted
    quarantine = frame.loc[rejected].astype(TEXT)
    quarantine[c.SOURCE_ROW] = frame.loc[rejected, c.SOURCE_ROW].astype("int64")
    quarantine[c.REASON] = v.reason[rejected]
    quarantine[c.DETAIL] = v.detail[rejected]
    if len(raw.malformed):
        bad = raw.malformed.copy()
        bad[c.REASON] = r.MALFORMED_ROW
        bad[c.DETAIL] = "the row does not split into the header's columns"
        quarantine = pd.concat([quarantine, bad], ignore_index=True)
    extra = sorted(col for col in typed if col not in spec.kinds)
    truncated = {col: int((cut & accepted).sum()) for col, cut in v.truncated.items()}
    for col, n in truncated.items():
        logger.info("%s.%s: %s kept values cut to the microsecond", spec.name, col, f"{n:,}")
    return Checked(
        spec.name,
        kept,
        quarantine.reset_index(drop=True),
        raw.rows_in,
        raw.files,
        extra,
        {col: n for col, n in truncated.items() if n},
    )


def check_events(raw: RawTable, mapping: Mapping, rules: IngestRules) -> Checked:
    spec = EVENTS_SPEC
    v = Verdicts(len(raw.frame))
    typed = _convert(raw.frame, spec, rules, v, ("id", "timestamp"))
    typed |= _convert(raw.frame, spec, rules, v, ("text",))
    _event_types(typed, raw.frame[c.EVENT_TYPE], mapping, v)
    typed |= _convert(raw.frame, spec, rules, v, ("float", "int", "bool"))
    if c.QUANTITY in typed:
        quantity = typed[c.QUANTITY]
        bad = (quantity <= 0).fillna(False).to_numpy()
        v.reject(bad, r.INVALID_VALUE, describe_values(c.QUANTITY, quantity[bad], "not positive"))
    _check_prices(typed, rules, v)
    _check_test_accounts(typed[c.USER_ID], rules, v)
    _check_resellers(typed, rules, v)
    if rules.deduplicate:
        _check_duplicates(typed, v, key=None)
    return _finish(raw, spec, typed, v)


def check_products(raw: RawTable, rules: IngestRules) -> Checked:
    spec = PRODUCTS_SPEC
    v = Verdicts(len(raw.frame))
    typed = _convert(raw.frame, spec, rules, v, ("id", "timestamp", "float", "int", "bool", "text"))
    _check_prices(typed, rules, v)
    _check_duplicates(typed, v, key=c.ITEM_ID)
    return _finish(raw, spec, typed, v)


def check_users(raw: RawTable, rules: IngestRules) -> Checked:
    spec = USERS_SPEC
    v = Verdicts(len(raw.frame))
    typed = _convert(raw.frame, spec, rules, v, ("id", "timestamp", "float", "int", "bool", "text"))
    if c.AGE in typed:
        age = typed[c.AGE]
        odd = ((age < 0) | (age > rules.max_age)).fillna(False).to_numpy()
        v.reject(
            odd, r.IMPLAUSIBLE_AGE, describe_values(c.AGE, age[odd], f"outside 0-{rules.max_age}")
        )
    _check_test_accounts(typed[c.USER_ID], rules, v)
    _check_duplicates(typed, v, key=c.USER_ID)
    return _finish(raw, spec, typed, v)
