"""People, their face crops, and each crop's embedding per model.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("userid", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "faces",  # the aligned crop is kept, so a new embedding model can re-embed without new photos
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("userid", sa.Text, sa.ForeignKey("people.userid", ondelete="CASCADE"), nullable=False),
        sa.Column("crop_jpeg", sa.LargeBinary, nullable=False),
        sa.Column("image_sha256", sa.Text, nullable=False),  # of the photo it came from
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("faces_userid", "faces", ["userid"])
    op.create_table(
        "embeddings",
        sa.Column("face_id", sa.Integer, sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.Text, primary_key=True),  # model name and sha256 of the file that made it
        sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, L2-normalised
    )
    op.create_index("embeddings_model", "embeddings", ["model"])


def downgrade() -> None:
    op.drop_table("embeddings")
    op.drop_table("faces")
    op.drop_table("people")
