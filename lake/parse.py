"""Converters from raw column values (text from CSV, or Parquet's own types) to contract types.

Each returns the converted values and a mask of values that were present but could not be
converted, so the caller can quarantine exactly those rows; absent values stay null.
"""

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

TEXT = pd.StringDtype("pyarrow")  # Arrow-backed text: string work runs in Arrow's kernels
MS_THRESHOLD = 1e11  # epoch values above this are milliseconds (1e11 seconds is the year 5138)
US_THRESHOLD = 1e14
OFFSET_SUFFIX = r"[Tt ]\d{2}(?::?\d{2}).*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


def present(values: pd.Series) -> pd.Series:
    """Non-null and, for text, not blank."""
    if ptypes.is_object_dtype(values) or ptypes.is_string_dtype(values):
        return values.notna() & (values.astype(TEXT).str.strip() != "")
    return values.notna()


def parse_text(values: pd.Series) -> pd.Series:
    """Text stripped of surrounding blanks; blank becomes null. Integral floats lose their '.0'."""
    if ptypes.is_float_dtype(values):
        whole = values.notna() & (values % 1 == 0)
        out = values.astype(object)
        out[whole] = values[whole].astype("int64").astype(str)
        out[values.notna() & ~whole] = values[values.notna() & ~whole].astype(str)
        return out.astype(TEXT)
    if ptypes.is_integer_dtype(values) or ptypes.is_bool_dtype(values):
        return values.astype(TEXT)
    text = values.astype(TEXT).str.strip()
    return text.mask(text == "")


def parse_float(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        out = values.astype("float64")
        return out, pd.Series(False, index=values.index) | ~np.isfinite(out.fillna(0.0))
    text = parse_text(values)
    out = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = (text.notna() & out.isna()) | ~np.isfinite(out.fillna(0.0))
    return out.where(~bad), bad


def parse_int(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole numbers; ``2.0`` is accepted as 2, ``2.5`` is not."""
    numbers, bad = parse_float(values)
    fractional = numbers.notna() & (numbers % 1 != 0)
    bad = bad | fractional
    return numbers.where(~bad).round().astype("Int64"), bad


def parse_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if ptypes.is_bool_dtype(values):
        return values.astype("boolean"), pd.Series(False, index=values.index)
    text = parse_text(values).str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(TRUE_WORDS).fillna(False)] = True
    out[text.isin(FALSE_WORDS).fillna(False)] = False
    return out, text.notna() & out.isna()


def _from_epoch(numbers: pd.Series) -> pd.Series:
    """Epoch seconds, milliseconds or microseconds, told apart by magnitude, to UTC instants."""
    magnitude = numbers.abs()
    scaled = numbers.where(magnitude < MS_THRESHOLD, numbers / 1e3)
    scaled = scaled.where(magnitude < US_THRESHOLD, numbers / 1e6)
    finite = scaled.where(np.isfinite(scaled) & (scaled.abs() < 1e11))
    return pd.to_datetime((finite * 1e3).round(), unit="ms", utc=True, errors="coerce")


def to_microseconds(instants: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Instants cut to the microsecond, and a mask of those that had finer digits.

    The lake keeps time to the microsecond, the finest that Parquet readers, DuckDB, Feast and
    PostgreSQL hold: finer digits (ISO strings with 9 decimals, nanosecond Parquet columns)
    would make every later store refuse or round them differently.
    """
    cut = instants.dt.floor("us")
    return cut, instants.notna() & (cut != instants)


def parse_timestamp(
    values: pd.Series, earliest: pd.Timestamp, latest: pd.Timestamp
) -> tuple[pd.Series, pd.Series]:
    """ISO 8601 text (naive means UTC), epoch numbers, or native timestamps, as UTC instants.

    Values outside ``[earliest, latest)`` count as unparseable: a year-1970 or year-3000 event
    is a broken clock, not a real event.
    """
    if ptypes.is_datetime64_any_dtype(values):
        out = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        given = values.notna()
    elif ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
        out = _from_epoch(values.astype("float64"))
        given = values.notna()
    else:
        text = parse_text(values)
        given = text.notna()
        numbers = pd.to_numeric(text, errors="coerce")
        is_number = numbers.notna()
        out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        if is_number.any():
            out[is_number] = _from_epoch(numbers[is_number].astype("float64"))
        rest = given & ~is_number
        # pandas reads a naive value after an offset one with that offset: parse them apart
        aware = rest & text.str.contains(OFFSET_SUFFIX, regex=True).fillna(False)
        for group in (aware, rest & ~aware):
            if group.any():
                out[group] = pd.to_datetime(
                    text[group], format="ISO8601", utc=True, errors="coerce"
                )
    out = out.astype("datetime64[ns, UTC]")
    in_range = (out >= earliest) & (out < latest)
    bad = given & ~(out.notna() & in_range)
    return out.where(~bad), bad
