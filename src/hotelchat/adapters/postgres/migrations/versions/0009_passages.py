"""Knowledge-base passages: each entry version is split into passages (its head, its whole text
and, for long entries, windows of a few sentences under its heading), each with its own vector;
retrieval scores an entry by its passages (issue 10; docs/retrieval.md). Replaces the two vector
columns of kb_entries, whose entries are embedded again (the worker's cron does it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
-- The vector type follows what 0003 chose: pgvector's `vector` where the server has it, else
-- arrays of doubles.
DO $$
DECLARE
  kind text;
BEGIN
  SELECT format_type(atttypid, atttypmod) INTO kind FROM pg_attribute
    WHERE attrelid = 'kb_entries'::regclass AND attname = 'embedding_text';
  EXECUTE format($sql$
    CREATE TABLE kb_passages (
      hotel_id       bigint NOT NULL,
      entry_id       bigint NOT NULL,
      ordinal        smallint NOT NULL CHECK (ordinal >= 0),
      kind           text NOT NULL CHECK (kind IN ('head', 'text', 'window')),
      text           text NOT NULL CHECK (length(text) BETWEEN 1 AND 9000),
      embedding      %s NOT NULL,
      model          text NOT NULL CHECK (length(model) <= 200),
      -- the entry's updated_at these passages were cut from
      entry_version  timestamptz NOT NULL,
      PRIMARY KEY (entry_id, ordinal),
      FOREIGN KEY (hotel_id, entry_id) REFERENCES kb_entries (hotel_id, id) ON DELETE CASCADE
    )$sql$, CASE WHEN kind = 'vector' THEN 'vector' ELSE 'double precision[]' END);
END
$$;
CREATE INDEX kb_passages_hotel ON kb_passages (hotel_id, model);
ALTER TABLE kb_passages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON kb_passages
  USING (hotel_id = hotelchat_current_hotel()) WITH CHECK (hotel_id = hotelchat_current_hotel());
GRANT SELECT, INSERT, UPDATE, DELETE ON kb_passages TO hotelchat_app;
-- The operator erases a hotel's entries; the passages go with them (ON DELETE CASCADE).
GRANT SELECT, DELETE ON kb_passages TO hotelchat_operator;
CREATE POLICY operator ON kb_passages TO hotelchat_operator USING (true);

ALTER TABLE kb_entries DROP COLUMN embedding_text, DROP COLUMN embedding_title;
-- Every entry is embedded again, into passages.
UPDATE kb_entries SET embedded_at = NULL, embedding_model = NULL;
"""

DOWNGRADE = r"""
DO $$
DECLARE
  kind text;
BEGIN
  SELECT format_type(atttypid, atttypmod) INTO kind FROM pg_attribute
    WHERE attrelid = 'kb_passages'::regclass AND attname = 'embedding';
  IF kind = 'vector' THEN
    EXECUTE 'ALTER TABLE kb_entries ADD COLUMN embedding_text vector,
                                    ADD COLUMN embedding_title vector';
  ELSE
    EXECUTE 'ALTER TABLE kb_entries ADD COLUMN embedding_text double precision[],
                                    ADD COLUMN embedding_title double precision[]';
  END IF;
END
$$;
UPDATE kb_entries SET embedded_at = NULL, embedding_model = NULL;
DROP TABLE kb_passages;
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
