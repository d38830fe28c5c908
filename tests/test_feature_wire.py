"""The bulk decoder of stored values agrees with protobuf on every kind of value."""

import pytest
from feast.protos.feast.types.Value_pb2 import Null, Value

from features.wire import decode

pytestmark = pytest.mark.unit

VALUES = [
    Value(double_val=0.0),
    Value(double_val=-1.5),
    Value(double_val=1e300),
    Value(int64_val=0),
    Value(int64_val=1),
    Value(int64_val=127),
    Value(int64_val=128),
    Value(int64_val=1_775_000_000),
    Value(int64_val=-1),
    Value(int64_val=-(2**63)),
    Value(int64_val=2**63 - 1),
    Value(string_val=""),
    Value(string_val="Beauty > Skin care"),
    Value(string_val="crème " * 40),
    Value(bool_val=True),
    Value(int32_val=-7),
    Value(float_val=2.5),
    Value(null_val=Null.NULL),
    Value(),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: str(v).strip() or "empty")
def test_decode_matches_protobuf(value: Value) -> None:
    kind = value.WhichOneof("val")
    expected = None if kind in (None, "null_val") else getattr(value, kind)
    assert decode(value.SerializeToString()) == expected


def test_absent_value_is_none() -> None:
    assert decode(None) is None
    assert decode(b"") is None


def test_the_scalar_kinds_take_the_fast_path(monkeypatch) -> None:
    import features.wire as wire

    def fail(data: bytes) -> object:
        raise AssertionError(f"slow path for {data!r}")

    monkeypatch.setattr(wire, "_slow", fail)
    for value in (Value(double_val=2.5), Value(int64_val=-3), Value(string_val="Toner")):
        kind = value.WhichOneof("val")
        assert decode(value.SerializeToString()) == getattr(value, kind)


@pytest.mark.parametrize(
    "column",
    [
        [Value(double_val=x) for x in (0.0, 1.5, -2.25)],
        [Value(int64_val=x) for x in (0, 5, 127)],
        [Value(int64_val=x) for x in (0, 128, -1, 1_775_000_000)],
        [Value(string_val=x) for x in ("a", "", "Beauty > Skincare")],
        [Value(int64_val=3), Value(), Value(double_val=1.0)],
    ],
)
def test_decode_column_matches_value_by_value(column: list[Value]) -> None:
    from features.wire import decode_column

    raw = [v.SerializeToString() for v in column]
    assert list(decode_column(raw)) == [decode(b) for b in raw]


def test_decode_column_of_random_whole_numbers_and_gaps() -> None:
    import numpy as np

    from features.wire import decode_column

    rng = np.random.default_rng(1)
    numbers = [int(x) for x in rng.integers(-(2**62), 2**62, 200)] + [0, 1, 127, 128, 2**63 - 1]
    raw = [Value(int64_val=x).SerializeToString() for x in numbers]
    assert decode_column(raw).tolist() == numbers
    small = [Value(int64_val=x).SerializeToString() for x in (0, 5, 300, -4, 1_775_000_000)]
    got = decode_column([None, *small, b""])
    assert np.isnan(got[0]) and np.isnan(got[6])
    assert got[1:6].tolist() == [0, 5, 300, -4, 1_775_000_000]
    # too large for a float next to a gap: decoded exactly, value by value
    assert decode_column([None, raw[0]]) == [None, numbers[0]]
    doubles = [Value(double_val=x).SerializeToString() for x in (1.5, -2.0)]
    assert decode_column([*doubles, None]).tolist()[:2] == [1.5, -2.0]
