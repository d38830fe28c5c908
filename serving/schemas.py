"""The HTTP contract of the service (PLATFORM.md section 4), validated by pydantic.

Every model forbids unknown fields, so a misspelt field is a 400 naming it rather than a
silently ignored filter; BentoML turns a validation error into a 400 whose ``detail`` lists
each offending field's location and what was wrong.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    field_validator,
)

MAX_K = 200
MAX_LIST = 500
MAX_EVENTS = 1_000
FEEDBACK_TYPES = ("impression", "click", "cart", "purchase")
# The instants a request may carry: from the lake's default earliest timestamp to a clock a
# day fast. Beyond them a value is a client's mistake, and a stored one broke every later
# session push (pandas ends in 2262): refused here with a 400 naming the field.
EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)
# C0 control characters and DEL: no id, category or attribute holds one, and a NUL in a
# feedback field made the database refuse the insert (a 500)
CONTROL = re.compile("[\x00-\x1f\x7f]")


class RequestError(ValueError):
    """A well-formed request that cannot be answered (an unknown item, a category the
    catalogue does not have): a 400 naming ``field``, in the same shape as a validation
    error."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message

    def as_validation_error(self, title: str):
        from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

        detail = InitErrorDetails(
            type=PydanticCustomError("unanswerable", self.message), loc=self.field, input=None
        )
        return ValidationError.from_exception_data(title, [detail])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        for text in value if isinstance(value, list) else (value,):
            if isinstance(text, str) and CONTROL.search(text):
                raise ValueError("control characters (NUL, line breaks, tabs) are not allowed")
        return value


def _instant(value: object) -> datetime:
    """ISO-8601 text or epoch seconds, always with a time zone (UTC when none is given),
    within ``[EARLIEST, now + CLOCK_SKEW]``."""
    return _in_window(_parsed(value))


def _parsed(value: object) -> datetime:
    if isinstance(value, bool):
        raise ValueError("expected an ISO-8601 time or epoch seconds, not a boolean")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"epoch seconds {value!r} out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:64]!r} is not an ISO-8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise ValueError("expected an ISO-8601 time or epoch seconds")


def within_window(instant: datetime) -> bool:
    """Whether an instant (time-zone aware) is one a request or a stored event may carry:
    from ``EARLIEST`` to ``CLOCK_SKEW`` after the service's clock."""
    return EARLIEST <= instant <= datetime.now(UTC) + CLOCK_SKEW


def _in_window(instant: datetime) -> datetime:
    if not within_window(instant):
        raise ValueError(
            f"{instant.isoformat()} is outside the accepted window: from "
            f"{EARLIEST:%Y-%m-%d} to one day after the service's clock"
        )
    return instant


class Context(Strict):
    timestamp: datetime | None = Field(None, description="the request's instant (default: now)")
    device: str | None = Field(None, max_length=32, description="desktop, mobile, tablet, app")
    country: str | None = Field(None, max_length=64)

    _ts = field_validator("timestamp", mode="before")(
        classmethod(lambda cls, v: None if v is None else _instant(v))
    )


# above zero; described as OpenAPI 3.0 says it (pydantic writes JSON Schema's numeric
# exclusiveMinimum, which a 3.0 document may not hold: generated clients and tests of the
# service's own /docs.json could not build a /recommend request)
PositivePrice = Annotated[
    StrictFloat,
    Field(gt=0),
    WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMinimum": True}),
]


class Filters(Strict):
    exclude_item_ids: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    category: str | None = Field(
        None, min_length=1, max_length=512, description="a category or a prefix of its path"
    )
    max_price: PositivePrice | None = None
    avoid_attributes: list[str] = Field(default_factory=list, max_length=100)


class RecommendRequest(Strict):
    user_id: str = Field(..., min_length=1, max_length=256)
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    context: Context = Field(default_factory=Context)
    session_item_ids: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    filters: Filters = Field(default_factory=Filters)


class SimilarRequest(Strict):
    item_id: str = Field(..., min_length=1, max_length=256)
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    filters: Filters = Field(default_factory=Filters)


class FeedbackEvent(Strict):
    request_id: str | None = Field(None, max_length=128)
    user_id: str = Field(..., min_length=1, max_length=256)
    item_id: str = Field(..., min_length=1, max_length=256)
    event_type: Literal["impression", "click", "cart", "purchase"]
    timestamp: datetime | None = None
    session_id: str | None = Field(None, max_length=256)
    price: StrictFloat | None = Field(None, ge=0)

    _ts = field_validator("timestamp", mode="before")(
        classmethod(lambda cls, v: None if v is None else _instant(v))
    )


class Item(BaseModel):
    item_id: str
    score: float
    reason: str


class RecommendResponse(BaseModel):
    items: list[Item]
    model_version: str
    variant: str
    request_id: str
    fallback: str | None = None
    cached: bool = False
