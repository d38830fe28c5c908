"""Feature services: the exact feature set of a model version, used by training and serving."""

from feast import FeatureService
from on_demand import request_context
from views import (
    product_activity,
    product_catalog,
    session_activity,
    user_activity,
    user_category_affinity,
    user_profile,
)

from features import names as n

ranker_v1 = FeatureService(
    name=n.RANKER_SERVICE,
    features=[
        user_activity,
        user_profile,
        product_activity,
        product_catalog,
        user_category_affinity,
        session_activity,
        request_context,
    ],
    description="Every feature of the first ranker: user, product, affinity, session, context.",
)
