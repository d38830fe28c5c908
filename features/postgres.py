"""Loading the feature tables into PostgreSQL, the production profile's offline store.

Each table is written as CSV by Arrow to a temporary file and copied in with ``COPY``, then
swapped in within one transaction, so Feast never reads a half-loaded table and memory stays
flat however large the table.
"""

import logging
import tempfile

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
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


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    """Quoted valid values and unquoted nulls, so COPY tells an empty string from a null."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(table, path, write_options=options)


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
            with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
                _write_csv(frame, tmp.name)
                with conn.cursor() as cur, open(tmp.name, encoding="utf-8") as data:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
                    copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(table)
                    cur.copy_expert(copy.as_string(conn), data)
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
