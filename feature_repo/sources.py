"""Sources: the offline tables `recsys features build` writes, by profile.

The profile (RECSYS_PROFILE) picks the source type; the views do not change with it:
local and scale read Parquet under $RECSYS_HOME/features, production reads PostgreSQL tables
in $RECSYS_PG_SCHEMA. Session features also arrive by push from the service's /feedback.
"""

import os
from pathlib import Path

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Int64, String

from features import names as n

PROFILE = os.environ.get("RECSYS_PROFILE", "local")
HOME = Path(os.environ.get("RECSYS_HOME") or Path(__file__).resolve().parents[1] / ".recsys")
PG_SCHEMA = os.environ.get("RECSYS_PG_SCHEMA", "recsys")


def offline_table(name: str):
    """The batch source of one feature table in the current profile."""
    if PROFILE == "production":
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=name,
            table=f"{PG_SCHEMA}.{name}",
            timestamp_field=n.EVENT_TIMESTAMP,
            created_timestamp_column=n.CREATED,
        )
    return FileSource(
        name=name,
        path=str(HOME.resolve() / "features" / f"{name}.parquet"),
        timestamp_field=n.EVENT_TIMESTAMP,
        created_timestamp_column=n.CREATED,
    )


user_activity_source = offline_table(n.USER_ACTIVITY)
user_profile_source = offline_table(n.USER_PROFILE)
product_activity_source = offline_table(n.PRODUCT_ACTIVITY)
product_catalog_source = offline_table(n.PRODUCT_CATALOG)
user_category_source = offline_table(n.USER_CATEGORY)

session_push = PushSource(
    name=n.SESSION_PUSH,
    batch_source=offline_table(n.SESSION),
    description="Session state pushed by /feedback within a second.",
)

request_data = RequestSource(
    name=n.REQUEST_SOURCE,
    schema=[Field(name=n.REQUEST_TS, dtype=Int64), Field(name=n.REQUEST_DEVICE, dtype=String)],
    description="What the request itself says: its time (epoch seconds) and the device.",
)
