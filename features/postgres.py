"""Loading the feature tables into PostgreSQL, the production profile's offline store.

Each table is replaced inside one transaction, so Feast never reads a half-loaded table.
"""

import io
import logging

import pandas as pd
import psycopg2
from pandas.api import types as ptypes
from psycopg2 import sql

from features.environment import pg_dsn, setting
from features.names import EVENT_TIMESTAMP

logger = logging.getLogger(__name__)


def _pg_type(series: pd.Series) -> str:
    if ptypes.is_datetime64_any_dtype(series):
        return "TIMESTAMPTZ"
    if ptypes.is_bool_dtype(series):
        return "BOOLEAN"
    if ptypes.is_integer_dtype(series):
        return "BIGINT"
    if ptypes.is_float_dtype(series):
        return "DOUBLE PRECISION"
    return "TEXT"


def load_tables(frames: dict[str, pd.DataFrame], schema: str | None = None) -> None:
    """Replace each table ``schema.name`` with ``frame`` (COPY, in one transaction per table)."""
    schema = schema or setting("RECSYS_PG_SCHEMA")
    with psycopg2.connect(pg_dsn()) as conn:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.commit()
        for name, frame in frames.items():
            table = sql.Identifier(schema, name)
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(_pg_type(frame[col])))
                for col in frame.columns
            )
            buffer = io.StringIO()
            frame.to_csv(
                buffer,
                index=False,
                header=False,
                na_rep="\\N",
                date_format="%Y-%m-%d %H:%M:%S.%f%z",
            )
            buffer.seek(0)
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                cur.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
                cur.copy_expert(
                    sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, NULL '\\N')")
                    .format(table)
                    .as_string(conn),
                    buffer,
                )
                cur.execute(
                    sql.SQL("CREATE INDEX ON {} ({})").format(
                        table, sql.Identifier(EVENT_TIMESTAMP)
                    )
                )
            conn.commit()
            logger.info("loaded %s rows into %s.%s", f"{len(frame):,}", schema, name)


def drop_schema(schema: str) -> None:
    """Remove a schema and its tables (used to clean up test projects)."""
    with psycopg2.connect(pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
