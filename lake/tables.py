"""The contract's tables: required columns and the type of every known column."""

from dataclasses import dataclass
from typing import Final, Literal

from recsys import columns as c

Kind = Literal["id", "text", "timestamp", "float", "int", "bool"]


@dataclass(frozen=True)
class TableSpec:
    """What a table must have and how each known column is typed; other columns are kept as text."""

    name: str
    required: tuple[str, ...]
    kinds: dict[str, Kind]
    sort_by: tuple[str, ...]

    @property
    def order(self) -> list[str]:
        return list(self.kinds)


EVENTS_SPEC: Final = TableSpec(
    name=c.EVENTS,
    required=(c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TIMESTAMP),
    kinds={
        c.USER_ID: "id",
        c.ITEM_ID: "id",
        c.EVENT_TYPE: "text",
        c.TIMESTAMP: "timestamp",
        c.SESSION_ID: "text",
        c.PRICE: "float",
        c.QUANTITY: "int",
        c.DEVICE: "text",
        c.COUNTRY: "text",
    },
    sort_by=(c.TIMESTAMP, c.USER_ID, c.SESSION_ID, c.ITEM_ID, c.EVENT_TYPE),
)

PRODUCTS_SPEC: Final = TableSpec(
    name=c.PRODUCTS,
    required=(c.ITEM_ID,),
    kinds={
        c.ITEM_ID: "id",
        c.TITLE: "text",
        c.DESCRIPTION: "text",
        c.CATEGORY: "text",
        c.BRAND: "text",
        c.PRICE: "float",
        c.ATTRIBUTES: "text",
        c.CREATED_AT: "timestamp",
        c.IN_STOCK: "bool",
    },
    sort_by=(c.ITEM_ID,),
)

USERS_SPEC: Final = TableSpec(
    name=c.USERS,
    required=(c.USER_ID,),
    kinds={
        c.USER_ID: "id",
        c.SIGNUP_AT: "timestamp",
        c.AGE: "int",
        c.GENDER: "text",
        c.COUNTRY: "text",
        c.REGION: "text",
    },
    sort_by=(c.USER_ID,),
)

SPECS: Final = {spec.name: spec for spec in (EVENTS_SPEC, PRODUCTS_SPEC, USERS_SPEC)}
