"""Names of entities, feature views, services and offline tables, shared by every stage."""

from typing import Final

EVENT_TIMESTAMP: Final = "event_timestamp"
CREATED: Final = "created"

# entities (join keys are the data contract's column names)
USER: Final = "user"
ITEM: Final = "item"
CATEGORY_ENTITY: Final = "category"

# feature views; each is backed by an offline table of the same name
USER_ACTIVITY: Final = "user_activity"
USER_PROFILE: Final = "user_profile"
PRODUCT_ACTIVITY: Final = "product_activity"
PRODUCT_CATALOG: Final = "product_catalog"
USER_CATEGORY: Final = "user_category_affinity"
SESSION: Final = "session_activity"
REQUEST_CONTEXT: Final = "request_context"  # on-demand view
REQUEST_SOURCE: Final = "request_data"
SESSION_PUSH: Final = "session_push"

TABLES: Final = (
    USER_ACTIVITY,
    USER_PROFILE,
    PRODUCT_ACTIVITY,
    PRODUCT_CATALOG,
    USER_CATEGORY,
    SESSION,
)

# the feature service every model version of the ranker starts from
RANKER_SERVICE: Final = "ranker_v1"

# request-time inputs of the on-demand view
REQUEST_TS: Final = "request_ts"  # epoch seconds of the request
REQUEST_DEVICE: Final = "request_device"

# windows (days) of the activity counts
USER_WINDOWS: Final = (7, 30, 90)
PRODUCT_WINDOWS: Final = (7, 30)
AFFINITY_WINDOWS: Final = (30, 90)
# the items of a session kept (its last events): as many as the model reads of a past
# (``history_items``, 30), so a session told click by click is the model's whole live session
SESSION_ITEMS_KEPT: Final = 30
