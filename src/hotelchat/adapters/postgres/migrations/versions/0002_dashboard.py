"""Agent dashboard and guest web chat: web-chat guests, internal notes, client message ids, read
markers, handoff tracking, agent sessions, and the login and membership lookups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
-- A web-chat guest is known by a random id kept (signed) in their browser.
ALTER TABLE guests ADD COLUMN web_id uuid;
ALTER TABLE guests ADD CONSTRAINT guests_one_identity
  CHECK ((wa_id IS NULL) <> (web_id IS NULL));
CREATE UNIQUE INDEX guests_web_id ON guests (hotel_id, web_id) WHERE web_id IS NOT NULL;

-- Internal notes live in the conversation's timeline but are never sent to the guest, and
-- never shown to the model.
ALTER TABLE messages DROP CONSTRAINT messages_direction_check;
ALTER TABLE messages ADD CONSTRAINT messages_direction_check
  CHECK (direction IN ('inbound', 'outbound', 'internal'));
ALTER TABLE messages ADD CONSTRAINT messages_internal_by_agent
  CHECK (direction <> 'internal' OR author = 'agent');
-- The id a browser gives a message it sends, so a retried POST stores it once.
ALTER TABLE messages ADD COLUMN client_id uuid;
CREATE UNIQUE INDEX messages_client_id ON messages (hotel_id, conversation_id, client_id)
  WHERE client_id IS NOT NULL;

-- What agents have seen (the unread count is inbound messages after it), and since when the
-- guest has been waiting for a human (set at handoff, cleared by the first agent reply).
ALTER TABLE conversations ADD COLUMN agent_read_up_to bigint NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN awaiting_human_since timestamptz;
CREATE INDEX conversations_awaiting_human ON conversations (hotel_id, awaiting_human_since)
  WHERE awaiting_human_since IS NOT NULL;
UPDATE conversations SET awaiting_human_since = handoff_at WHERE state = 'needs_human';

-- Agent sessions: the cookie holds a random token; only its SHA-256 is stored. Not a tenant
-- table: a session exists before a hotel is chosen, and moves between the agent's hotels.
CREATE TABLE agent_sessions (
  token_hash    bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  agent_id      bigint NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  hotel_id      bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  csrf_token    text NOT NULL CHECK (length(csrf_token) >= 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX agent_sessions_agent ON agent_sessions (agent_id);
CREATE INDEX agent_sessions_expiry ON agent_sessions (expires_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_sessions TO hotelchat_app;

-- Login: the one agent with this email, before any tenant is known.
CREATE FUNCTION hotelchat_agent_login(p_email text)
  RETURNS TABLE (agent_id bigint, password_hash text, disabled boolean, display_name text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT a.id, a.password_hash, a.disabled, a.display_name
    FROM public.agents a WHERE lower(a.email) = lower(p_email)
  $$;

-- The hotels an agent may work in, with the agent's role in each.
CREATE FUNCTION hotelchat_agent_hotels(p_agent_id bigint)
  RETURNS TABLE (hotel_id bigint, slug text, name text, role text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT h.id, h.slug, h.name, ah.role
    FROM public.agent_hotels ah JOIN public.hotels h ON h.id = ah.hotel_id
    JOIN public.agents a ON a.id = ah.agent_id
    WHERE ah.agent_id = p_agent_id AND NOT a.disabled
    ORDER BY h.name
  $$;

-- Conversations whose guest waits for a human, oldest first per hotel (for the metrics).
CREATE FUNCTION hotelchat_oldest_awaiting_human()
  RETURNS TABLE (hotel_slug text, waiting_seconds double precision)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT h.slug, COALESCE(extract(epoch FROM now() - min(c.awaiting_human_since)), 0)
    FROM public.hotels h
    LEFT JOIN public.conversations c
      ON c.hotel_id = h.id AND c.awaiting_human_since IS NOT NULL
    GROUP BY h.slug
  $$;

-- The sender route now names the hotel's slug too (the label metrics carry).
DROP FUNCTION hotelchat_route_whatsapp_sender(text);
CREATE FUNCTION hotelchat_route_whatsapp_sender(p_phone_number text)
  RETURNS TABLE (hotel_id bigint, sender_id bigint, phone_number text, account_sid text,
                 auth_token text, hotel_slug text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT s.hotel_id, s.id, s.phone_number, s.account_sid, s.auth_token, h.slug
    FROM public.whatsapp_senders s JOIN public.hotels h ON h.id = s.hotel_id
    WHERE s.phone_number = p_phone_number
  $$;
REVOKE ALL ON FUNCTION hotelchat_route_whatsapp_sender(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_whatsapp_sender(text) TO hotelchat_app;

REVOKE ALL ON FUNCTION hotelchat_agent_login(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_agent_hotels(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_oldest_awaiting_human() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_agent_login(text) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_agent_hotels(bigint) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_oldest_awaiting_human() TO hotelchat_app;
"""

DOWNGRADE = r"""
DROP FUNCTION hotelchat_route_whatsapp_sender(text);
CREATE FUNCTION hotelchat_route_whatsapp_sender(p_phone_number text)
  RETURNS TABLE (hotel_id bigint, sender_id bigint, phone_number text, account_sid text,
                 auth_token text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT s.hotel_id, s.id, s.phone_number, s.account_sid, s.auth_token
    FROM public.whatsapp_senders s WHERE s.phone_number = p_phone_number
  $$;
REVOKE ALL ON FUNCTION hotelchat_route_whatsapp_sender(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_whatsapp_sender(text) TO hotelchat_app;
DROP FUNCTION hotelchat_oldest_awaiting_human();
DROP FUNCTION hotelchat_agent_hotels(bigint);
DROP FUNCTION hotelchat_agent_login(text);
DROP TABLE agent_sessions;
DROP INDEX conversations_awaiting_human;
ALTER TABLE conversations DROP COLUMN awaiting_human_since, DROP COLUMN agent_read_up_to;
DROP INDEX messages_client_id;
ALTER TABLE messages DROP COLUMN client_id;
DELETE FROM messages WHERE direction = 'internal';
ALTER TABLE messages DROP CONSTRAINT messages_internal_by_agent;
ALTER TABLE messages DROP CONSTRAINT messages_direction_check;
ALTER TABLE messages ADD CONSTRAINT messages_direction_check
  CHECK (direction IN ('inbound', 'outbound'));
DROP INDEX guests_web_id;
DELETE FROM guests WHERE web_id IS NOT NULL;
ALTER TABLE guests DROP CONSTRAINT guests_one_identity;
ALTER TABLE guests DROP COLUMN web_id;
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
