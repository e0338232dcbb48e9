"""Revision 0002: ``predictions.drift_alarms`` (ADWIN alarms of the serving model, default 0).

Rows stored before this revision get 0 through the server default. A store created before the
history was versioned may already have the column (``create_all`` of the schema since commit
fe8cfff): it is then left as it is. Batch mode, because SQLite alters tables only in part
(https://alembic.sqlalchemy.org/en/latest/batch.html); adding a column is a plain ``ALTER TABLE
... ADD COLUMN`` on both databases, so no table is copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("predictions")}
    if "drift_alarms" not in columns:
        with op.batch_alter_table("predictions") as batch:
            batch.add_column(sa.Column("drift_alarms", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("drift_alarms")
