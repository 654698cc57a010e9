"""Media: the files a message carries (a guest's photo from WhatsApp or the web chat, an agent's
attachment), each with its state (pending, stored, refused, failed) shown to staff, its place in
object storage under the hotel's prefix, and whether Twilio's copy was deleted; and a hotel's
opt-in to image understanding (photos passed to a vision-capable model; off by default).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE media (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id           bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  message_id         bigint NOT NULL,
  position           smallint NOT NULL CHECK (position BETWEEN 0 AND 9),
  -- Twilio's MediaUrl{N} of an inbound WhatsApp message; NULL for uploads.
  source_url         text CHECK (length(source_url) <= 1000),
  media_sid          text CHECK (media_sid ~ '^ME[0-9a-f]{32}$'),
  content_type       text NOT NULL CHECK (length(content_type) BETWEEN 1 AND 255),
  filename           text CHECK (length(filename) <= 200),
  size_bytes         bigint CHECK (size_bytes >= 0),
  storage_key        text CHECK (length(storage_key) <= 500),
  state              text NOT NULL CHECK (state IN ('pending', 'stored', 'refused', 'failed')),
  error              text CHECK (length(error) <= 300),
  attempts           integer NOT NULL DEFAULT 0,
  claimed_until      timestamptz,
  twilio_deleted_at  timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  stored_at          timestamptz,
  UNIQUE (hotel_id, id),
  UNIQUE (message_id, position),
  FOREIGN KEY (hotel_id, message_id) REFERENCES messages(hotel_id, id) ON DELETE CASCADE,
  CHECK ((state = 'stored') = (storage_key IS NOT NULL AND stored_at IS NOT NULL))
);
CREATE INDEX media_by_message ON media (hotel_id, message_id);
CREATE INDEX media_pending ON media (created_at) WHERE state = 'pending';

ALTER TABLE media ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON media
  USING (hotel_id = hotelchat_current_hotel())
  WITH CHECK (hotel_id = hotelchat_current_hotel());
GRANT SELECT, INSERT, UPDATE, DELETE ON media TO hotelchat_app;

ALTER TABLE hotels ADD COLUMN image_understanding boolean NOT NULL DEFAULT false;
GRANT UPDATE (image_understanding) ON hotels TO hotelchat_app;

-- Media a crash or a queue outage left without a download job (the sweeper queues them again).
CREATE FUNCTION hotelchat_stalled_media(p_min_age_seconds integer, p_limit integer)
  RETURNS TABLE (hotel_id bigint, message_id bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT m.hotel_id, m.message_id FROM public.media m
    WHERE m.state = 'pending' AND m.source_url IS NOT NULL
      AND m.created_at < now() - make_interval(secs => p_min_age_seconds)
      AND (m.claimed_until IS NULL OR m.claimed_until < now())
    GROUP BY m.hotel_id, m.message_id
    ORDER BY min(m.created_at) LIMIT p_limit
  $$;
REVOKE ALL ON FUNCTION hotelchat_stalled_media(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_stalled_media(integer, integer) TO hotelchat_app;
"""

DOWNGRADE = r"""
DROP FUNCTION hotelchat_stalled_media(integer, integer);
ALTER TABLE hotels DROP COLUMN image_understanding;
DROP TABLE media;
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
