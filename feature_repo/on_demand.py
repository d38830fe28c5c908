"""Request-time context: computed from the request and stored features, never stored itself.

Feast serialises the function by value; it imports the shared implementation when it runs, so
Feast's retrieval and the service compute the context with the very same code.
"""

import pandas as pd
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from sources import request_data
from views import product_catalog, user_activity

from features.context import CONTEXT_FEATURES, FLOAT_FEATURES


@on_demand_feature_view(
    sources=[request_data, product_catalog, user_activity],
    schema=[
        Field(name=name, dtype=Float64 if name in FLOAT_FEATURES else Int64)
        for name in CONTEXT_FEATURES
    ],
    mode="pandas",
    description="Hour, weekday, month, season, device, and the product's price and age "
    "against the user's habits; the service calls the same function.",
)
def request_context(inputs: pd.DataFrame) -> pd.DataFrame:
    from features.context import context_features

    return context_features(inputs)
