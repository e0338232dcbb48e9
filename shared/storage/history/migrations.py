"""The versioned schema of the history store: Alembic revisions, run when the store opens.

The revisions live in ``revisions/versions/`` beside this module (a standard Alembic script
directory without ``env.py``: they are run here, programmatically, through
:class:`alembic.runtime.environment.EnvironmentContext`, as Alembic's API documentation shows
for use outside ``env.py``). The database's revision is the row of table ``alembic_version``,
as the ``alembic`` command line reads it.

* ``0001`` — tables ``bars`` and ``predictions`` as first released;
* ``0002`` — ``predictions.drift_alarms`` (INTEGER NOT NULL DEFAULT 0).

A store created before the schema was versioned (``metadata.create_all``, no ``alembic_version``)
is upgraded from the start: revisions 0001 and 0002 create or add only what is missing, so such
a store ends stamped at the head with its tables and rows untouched, whichever of the two
schemas ``create_all`` built. Later revisions need no such care: every store that runs them has
been stamped.

Alembic is imported only inside these functions, when a store opens, never when the function
app is indexed (``tests/unit/test_cold_start.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shared.storage.history.schema import MYSQL_DIALECTS, metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

REVISIONS = Path(__file__).with_name("revisions")
"""The Alembic script directory (``versions/`` holds one file per revision)."""

LOCK_NAME = "tickcast_history_schema"
"""MySQL/MariaDB named lock held while a store is upgraded (``GET_LOCK``)."""

LOCK_TIMEOUT_S = 60
"""Longest wait for another process's upgrade, in seconds: adding a column to InnoDB is an
in-place, instant ``ALTER`` on MariaDB >= 10.3 and MySQL >= 8.0, so a minute is ample."""


def alembic_script() -> tuple[Config, ScriptDirectory]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(REVISIONS))
    return config, ScriptDirectory.from_config(config)


def head_revision() -> str:
    """The newest revision of the schema, e.g. ``'0002'``.

    Examples
    --------
    >>> head_revision() >= "0002"
    True
    """
    head = alembic_script()[1].get_current_head()
    assert head is not None, "no revisions"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or ``None`` if it has never been stamped.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be read.
    """
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _exclusive(connection: Connection) -> Iterator[None]:
    """Hold the MySQL/MariaDB named lock :data:`LOCK_NAME` (SQLite: the write lock of the file
    serialises the DDL already), so that two instances opening the store upgrade it once."""
    if connection.dialect.name not in MYSQL_DIALECTS:
        yield
        return
    got = connection.execute(sa.select(sa.func.get_lock(LOCK_NAME, LOCK_TIMEOUT_S))).scalar()
    if got != 1:
        raise TimeoutError(f"history schema lock {LOCK_NAME!r} not obtained in {LOCK_TIMEOUT_S} s")
    try:
        yield
    finally:
        connection.execute(sa.select(sa.func.release_lock(LOCK_NAME)))


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the head revision; a no-op (one read of ``alembic_version``) if it is there.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        A MySQL/MariaDB (PyMySQL) or SQLite engine.

    Returns
    -------
    tuple of (str or None, str)
        The revision before (``None``: never stamped) and after.

    Raises
    ------
    TimeoutError
        MySQL/MariaDB: another process held the upgrade lock longer than :data:`LOCK_TIMEOUT_S`.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be reached or refuses the DDL. On MySQL each DDL statement commits
        on its own, and each revision is stamped once it is applied, so a retry resumes after
        the last completed revision; revisions 0001 and 0002 are safe to rerun in part.
    """
    from alembic.runtime.environment import EnvironmentContext

    config, script = alembic_script()
    head = script.get_current_head()
    assert head is not None, "no revisions"
    with engine.connect() as connection:
        before = current_revision(connection)
        connection.rollback()
        if before == head:
            return before, head
        with _exclusive(connection):
            before = current_revision(connection)  # another process may have upgraded meanwhile

            def steps(revision: Any, _context: Any) -> Any:
                return script._upgrade_revs("head", revision)

            with EnvironmentContext(config, script, fn=steps, destination_rev="head") as env:
                env.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
                with env.begin_transaction():
                    env.run_migrations()
            connection.commit()
            after = current_revision(connection)
            connection.commit()
    assert after == head, f"upgrade stopped at {after!r}, head is {head!r}"
    return before, after
