"""WhatsApp as hotels use it: a guest's opt-out of proactive messages (STOP / START), per hotel,
with when it changed; and the parts of a long outbound message, each sent once, in order, with
its own MessageSid and delivery status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
-- One row per guest who ever sent an opt-out or opt-in keyword to the hotel: whether they are
-- opted out of proactive messages (templates, journeys) now, since when, and the inbound message
-- that changed it. No row: never opted out.
CREATE TABLE guest_consents (
  hotel_id    bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  guest_id    bigint NOT NULL,
  opted_out   boolean NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now(),
  keyword     text NOT NULL CHECK (length(keyword) BETWEEN 1 AND 64),
  message_id  bigint,  -- the keyword's inbound message (kept if that is deleted)
  PRIMARY KEY (hotel_id, guest_id),
  FOREIGN KEY (hotel_id, guest_id) REFERENCES guests(hotel_id, id) ON DELETE CASCADE
);
ALTER TABLE guest_consents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON guest_consents
  USING (hotel_id = hotelchat_current_hotel())
  WITH CHECK (hotel_id = hotelchat_current_hotel());
GRANT SELECT, INSERT, UPDATE ON guest_consents TO hotelchat_app;

-- The confirmation of an opt-out or opt-in is the automated reply to the keyword's message.
ALTER TABLE messages DROP CONSTRAINT messages_responder_check;
ALTER TABLE messages ADD CONSTRAINT messages_responder_check
  CHECK (responder IN ('openai', 'knowledge_base', 'holding', 'cache', 'consent'));

-- The parts of an outbound message longer than Twilio's 1,600 characters, stored before the
-- first is sent. Each is sent once, in order: a re-run job sends only parts without a
-- MessageSid, and looks a part up at Twilio first when an earlier attempt may have sent it.
CREATE TABLE message_parts (
  hotel_id           bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  message_id         bigint NOT NULL,
  part_index         smallint NOT NULL CHECK (part_index BETWEEN 0 AND 49),
  body               text NOT NULL CHECK (length(body) BETWEEN 1 AND 1600),
  provider_sid       text UNIQUE CHECK (provider_sid ~ '^[A-Z]{2}[0-9a-f]{32}$'),
  status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending',
                       'accepted', 'queued', 'sent', 'delivered', 'read', 'undelivered',
                       'failed')),
  error_code         text CHECK (length(error_code) <= 64),
  send_attempted_at  timestamptz,
  sent_at            timestamptz,
  delivered_at       timestamptz,
  read_at            timestamptz,
  PRIMARY KEY (hotel_id, message_id, part_index),
  FOREIGN KEY (hotel_id, message_id) REFERENCES messages(hotel_id, id) ON DELETE CASCADE
);
ALTER TABLE message_parts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON message_parts
  USING (hotel_id = hotelchat_current_hotel())
  WITH CHECK (hotel_id = hotelchat_current_hotel());
GRANT SELECT, INSERT, UPDATE ON message_parts TO hotelchat_app;
"""

DOWNGRADE = r"""
DROP TABLE message_parts;
UPDATE messages SET responder = 'holding' WHERE responder = 'consent';
ALTER TABLE messages DROP CONSTRAINT messages_responder_check;
ALTER TABLE messages ADD CONSTRAINT messages_responder_check
  CHECK (responder IN ('openai', 'knowledge_base', 'holding', 'cache'));
DROP TABLE guest_consents;
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
