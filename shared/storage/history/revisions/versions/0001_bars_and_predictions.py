"""Revision 0001: tables ``bars`` and ``predictions`` as first released (before ``drift_alarms``).

Frozen copy of the schema of ``shared/history.py`` before commit fe8cfff; it must never follow later
changes of :mod:`shared.storage.history.schema` (later revisions do). Key strings are ``utf8mb4_bin``
on MySQL/MariaDB, prices IEEE doubles, times BIGINT ms since epoch UTC.

A store created before the history was versioned (``metadata.create_all``, no ``alembic_version``
row) runs this revision too: it creates only the tables that are missing, so existing tables and
their rows are left exactly as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_MYSQL = ("mysql", "mariadb")
_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _price(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double().with_variant(mysql.DOUBLE(asdecimal=False), *_MYSQL), nullable=nullable)


def _key(minute: str) -> list[sa.Column[object]]:
    return [
        sa.Column("exchange", _text(32), primary_key=True),
        sa.Column("symbol", _text(64), primary_key=True),
        sa.Column(minute, sa.BigInteger, primary_key=True, autoincrement=False),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "bars" not in existing:
        op.create_table(
            "bars",
            *_key("open_time_ms"),
            *(_price(name) for name in ("open", "high", "low", "close", "volume")),
            sa.Column("trade_count", sa.Integer, nullable=False),
            sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
            comment="closed one-minute OHLCV bars; prices in quote currency, times ms since epoch UTC",
            **_OPTIONS,
        )
    if "predictions" not in existing:
        op.create_table(
            "predictions",
            *_key("target_time_ms"),
            sa.Column("model_version", _text(128), primary_key=True),
            sa.Column("made_at_ms", sa.BigInteger, nullable=False),
            *(_price(name) for name in ("last_close", "predicted_close", "lower", "upper", "interval_level")),
            sa.Column("latency_ms", sa.BigInteger, nullable=False),
            _price("realised_close", nullable=True),
            sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
            comment="forecasts of the close of the minute starting at target_time_ms, with the realised close",
            **_OPTIONS,
        )


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("bars")
