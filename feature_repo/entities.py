"""Entities: the keys features hang from. Join keys are the data contract's column names."""

from feast import Entity, ValueType

from features import names as n
from recsys import columns as c

user = Entity(
    name=n.USER,
    join_keys=[c.USER_ID],
    value_type=ValueType.STRING,
    description="A shopper, known or anonymous, by the shop's own id.",
)
item = Entity(
    name=n.ITEM,
    join_keys=[c.ITEM_ID],
    value_type=ValueType.STRING,
    description="A product of the catalogue.",
)
category = Entity(
    name=n.CATEGORY_ENTITY,
    join_keys=[c.CATEGORY],
    value_type=ValueType.STRING,
    description="A leaf category path such as 'Beauty > Skincare > Toner'.",
)
