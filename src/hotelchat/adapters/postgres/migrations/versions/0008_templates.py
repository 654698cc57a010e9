"""WhatsApp templates and the 24-hour window: each hotel's approved templates (Twilio Content
API, `HX…`), the template an outbound message was sent with, the conversation's window closed
by a Twilio 63016, and journeys (templates scheduled relative to a reservation's check-in or
check-out, each sent once per reservation).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("whatsapp_templates", "outbound_templates", "journeys", "journey_sends")

UPGRADE = r"""
-- A hotel's templates: synced from its Twilio account's Content API (source 'twilio'), or added
-- by hand for tests and development (source 'manual'). `variables` holds the template's
-- placeholders with their sample/default values: {"1": "Ana", "2": "12 May"}. Only approved
-- templates are offered. https://www.twilio.com/docs/content/content-api-resources
CREATE TABLE whatsapp_templates (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id         bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  content_sid      text NOT NULL CHECK (content_sid ~ '^HX[0-9a-fA-F]{32}$'),
  friendly_name    text NOT NULL CHECK (friendly_name ~ '^[A-Za-z0-9_.-]{1,200}$'),
  language         text NOT NULL CHECK (language ~ '^[a-z]{2,3}(_[A-Z]{2})?$'),
  body             text NOT NULL CHECK (length(body) BETWEEN 1 AND 1024),
  variables        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
  approval_status  text NOT NULL DEFAULT 'approved' CHECK (length(approval_status) <= 32),
  source           text NOT NULL CHECK (source IN ('twilio', 'manual')),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, content_sid)
);
CREATE INDEX whatsapp_templates_name ON whatsapp_templates (hotel_id, friendly_name, language);

-- The template an outbound message was sent with (its body is the rendered preview).
CREATE TABLE outbound_templates (
  message_id   bigint PRIMARY KEY,
  hotel_id     bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  content_sid  text NOT NULL CHECK (content_sid ~ '^HX[0-9a-fA-F]{32}$'),
  variables    jsonb NOT NULL CHECK (jsonb_typeof(variables) = 'object'),
  FOREIGN KEY (hotel_id, message_id) REFERENCES messages(hotel_id, id) ON DELETE CASCADE
);

-- Twilio said 63016 (outside the window): free-form sends stay refused until the guest writes
-- again (last_inbound_at later than this).
ALTER TABLE conversations ADD COLUMN window_closed_at timestamptz;

-- Notices the system adds to a conversation's timeline for staff (e.g. "use a template").
ALTER TABLE messages DROP CONSTRAINT messages_internal_by_agent;
ALTER TABLE messages ADD CONSTRAINT messages_internal_by_agent
  CHECK (direction <> 'internal' OR author IN ('agent', 'system'));

-- Journeys: template `template_name` (its variant in the guest's language) sent `offset_days`
-- days from the reservation's check-in or check-out, at `send_time` hotel time; a send falling
-- inside quiet hours [quiet_start, quiet_end) (hotel time, may wrap midnight) waits until they
-- end. `variables` maps placeholders to reservation fields: {"1": "guest_name"}.
CREATE TABLE journeys (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id       bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  name           text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,100}$'),
  template_name  text NOT NULL CHECK (template_name ~ '^[A-Za-z0-9_.-]{1,200}$'),
  anchor         text NOT NULL CHECK (anchor IN ('check_in', 'check_out')),
  offset_days    integer NOT NULL CHECK (offset_days BETWEEN -60 AND 60),
  send_time      time NOT NULL,
  quiet_start    time,
  quiet_end      time,
  variables      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
  enabled        boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, name),
  UNIQUE (hotel_id, id),
  CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- One row per (journey, reservation), claimed in the same transaction that stores the outbound
-- message: the send then goes through the outbound exactly-once path. `outcome` says why
-- nothing was sent when `message_id` is NULL.
CREATE TABLE journey_sends (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id        bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  journey_id      bigint NOT NULL,
  reservation_id  bigint NOT NULL REFERENCES reservations(id) ON DELETE CASCADE,
  message_id      bigint REFERENCES messages(id) ON DELETE SET NULL,
  outcome         text NOT NULL CHECK (outcome IN ('queued', 'opted_out', 'no_phone',
                    'no_template', 'no_sender', 'invalid_variables')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (journey_id, reservation_id),
  FOREIGN KEY (hotel_id, journey_id) REFERENCES journeys(hotel_id, id) ON DELETE CASCADE
);

GRANT SELECT, INSERT, UPDATE, DELETE
  ON whatsapp_templates, outbound_templates, journeys, journey_sends TO hotelchat_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO hotelchat_app;

-- Hotels with a routable WhatsApp number (template sync) and with enabled journeys (the
-- journey cron), before any tenant is chosen.
CREATE FUNCTION hotelchat_template_hotels() RETURNS SETOF bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT DISTINCT s.hotel_id FROM public.whatsapp_senders s
    JOIN public.hotels h ON h.id = s.hotel_id
    WHERE s.retired_at IS NULL AND NOT h.suspended
  $$;
CREATE FUNCTION hotelchat_journey_hotels() RETURNS SETOF bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT DISTINCT j.hotel_id FROM public.journeys j
    JOIN public.hotels h ON h.id = j.hotel_id
    WHERE j.enabled AND NOT h.suspended
  $$;
REVOKE ALL ON FUNCTION hotelchat_template_hotels() FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_journey_hotels() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_template_hotels() TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_journey_hotels() TO hotelchat_app;
"""

TENANT_POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {table}
  USING (hotel_id = hotelchat_current_hotel()) WITH CHECK (hotel_id = hotelchat_current_hotel());
"""

DOWNGRADE = r"""
DROP FUNCTION hotelchat_journey_hotels();
DROP FUNCTION hotelchat_template_hotels();
DROP TABLE journey_sends, journeys, outbound_templates, whatsapp_templates;
DELETE FROM messages WHERE direction = 'internal' AND author = 'system';
ALTER TABLE messages DROP CONSTRAINT messages_internal_by_agent;
ALTER TABLE messages ADD CONSTRAINT messages_internal_by_agent
  CHECK (direction <> 'internal' OR author = 'agent');
ALTER TABLE conversations DROP COLUMN window_closed_at;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    for table in TENANT_TABLES:
        run_sql(TENANT_POLICY.format(table=table))


def downgrade() -> None:
    run_sql(DOWNGRADE)
