"""Schema migrations (Alembic), driven from code: the CLI, readiness and tests use these."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "seawall:migrations")
    # ConfigParser interpolation would treat a password's % as syntax.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _config_for(engine: Engine) -> Config:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(_config_for(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(_config_for(engine), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def is_current(connection: Connection) -> bool:
    return current_revision(connection) == head_revision()
