"""Connection strings built from RECSYS_PG_* settings carry any password intact and the
sslmode setting: parsed back by the libraries that use them (SQLAlchemy for MLflow and the
feedback log, libpq for psycopg2), not compared as text."""

import psycopg2.extensions
import pytest
import sqlalchemy as sa

from features.environment import pg_dsn
from recsys import tracking
from recsys.workspace import Workspace
from serving.feedback import database_url

PASSWORDS = ["p w@/%:?#&=", "it's \\ a 'quote'", 'dou"ble']


@pytest.fixture
def production(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECSYS_MLFLOW_URI", raising=False)
    monkeypatch.delenv("RECSYS_FEEDBACK_URL", raising=False)
    monkeypatch.setenv("RECSYS_PG_HOST", "db.example")
    monkeypatch.setenv("RECSYS_PG_PORT", "6543")
    monkeypatch.setenv("RECSYS_PG_DATABASE", "shop")
    monkeypatch.setenv("RECSYS_PG_USER", "rec user")
    monkeypatch.setenv("RECSYS_PG_SSLMODE", "require")
    return Workspace(home=tmp_path, profile="production")


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_mlflow_and_feedback_urls_keep_the_password_and_sslmode(
    production: Workspace, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # given a password holding URL and quoting characters
    monkeypatch.setenv("RECSYS_PG_PASSWORD", password)
    # when the URLs are built and parsed back as SQLAlchemy parses them
    for url in (tracking.tracking_uri(production), database_url(production)):
        parsed = sa.engine.make_url(url)
        # then every part is what was set
        assert (parsed.username, parsed.password) == ("rec user", password), url
        assert (parsed.host, parsed.port, parsed.database) == ("db.example", 6543, "shop")
        assert parsed.query["sslmode"] == "require"


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_libpq_string_keeps_the_password_and_sslmode(
    production: Workspace, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # given the same passwords
    monkeypatch.setenv("RECSYS_PG_PASSWORD", password)
    # when the libpq connection string is parsed by libpq itself
    parsed = psycopg2.extensions.parse_dsn(pg_dsn())
    # then it holds each setting as given
    assert parsed == {
        "host": "db.example",
        "port": "6543",
        "dbname": "shop",
        "user": "rec user",
        "sslmode": "require",
        "password": password,
    }
