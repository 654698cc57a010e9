"""Chains, hotels (the tenant), WhatsApp senders, guests, conversations, messages, knowledge base,
agents; row-level security by hotel; the routing functions that run before a tenant is known.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose rows belong to one hotel: each has `hotel_id` and the same policy.
TENANT_TABLES = (
    "whatsapp_senders",
    "guests",
    "conversations",
    "messages",
    "kb_entries",
    "agent_hotels",
)

SCHEMA = r"""
-- The group role the application logs in as a member of. It never owns a table, so row-level
-- security always applies to it. `hotelchat migrate` grants it to DATABASE_URL's user.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hotelchat_app') THEN
    CREATE ROLE hotelchat_app NOLOGIN;
  END IF;
END
$$;

-- The tenant of the current transaction, set by `set_config('hotelchat.hotel_id', $1, true)`.
-- NULL when unset; '' (after an earlier transaction on the same connection set it) is NULL too.
CREATE FUNCTION hotelchat_current_hotel() RETURNS bigint
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('hotelchat.hotel_id', true), '')::bigint $$;

-- Delivery statuses only move forwards; see hotelchat.domain.model.status_advances (a unit test
-- keeps the two in step). Unknown statuses rank lowest so they never overwrite a known one.
CREATE FUNCTION hotelchat_status_rank(p_status text) RETURNS integer
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT CASE p_status
      WHEN 'received' THEN 0 WHEN 'pending' THEN 0 WHEN 'sending' THEN 1
      WHEN 'accepted' THEN 2 WHEN 'queued' THEN 3 WHEN 'sent' THEN 4 WHEN 'delivered' THEN 5
      WHEN 'undelivered' THEN 6 WHEN 'failed' THEN 6 WHEN 'read' THEN 7
      ELSE -1 END
  $$;

CREATE TABLE chains (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hotels (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain_id           bigint NOT NULL REFERENCES chains(id),
  slug               text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  timezone           text NOT NULL DEFAULT 'UTC',
  default_language   text NOT NULL DEFAULT 'en' CHECK (default_language ~ '^[a-z]{2}$'),
  search_config      regconfig NOT NULL DEFAULT 'english',
  description        text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
  ai_model           text CHECK (length(ai_model) BETWEEN 1 AND 100),
  ai_enabled         boolean NOT NULL DEFAULT true,
  knowledge_version  bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE whatsapp_senders (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id      bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  phone_number  text NOT NULL UNIQUE CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  account_sid   text NOT NULL CHECK (account_sid ~ '^AC[0-9a-f]{32}$'),
  auth_token    text NOT NULL CHECK (length(auth_token) BETWEEN 16 AND 128),
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, id)
);

CREATE TABLE guests (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id      bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  wa_id         text CHECK (wa_id ~ '^[0-9]{6,15}$'),
  phone_number  text CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  display_name  text CHECK (length(display_name) <= 256),
  language      text CHECK (language ~ '^[a-z]{2,3}$'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, id),
  UNIQUE (hotel_id, wa_id)
);

CREATE TABLE agents (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  chain_id       bigint NOT NULL REFERENCES chains(id),
  email          text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
  display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
  password_hash  text NOT NULL,
  disabled       boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX agents_email ON agents (lower(email));

CREATE TABLE agent_hotels (
  agent_id  bigint NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  hotel_id  bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  role      text NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'manager')),
  PRIMARY KEY (agent_id, hotel_id)
);

CREATE TABLE conversations (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id           bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  guest_id           bigint NOT NULL,
  channel            text NOT NULL CHECK (channel IN ('whatsapp', 'web')),
  sender_id          bigint,
  state              text NOT NULL DEFAULT 'ai'
                       CHECK (state IN ('ai', 'needs_human', 'agent', 'resolved')),
  handoff_reason     text CHECK (length(handoff_reason) <= 500),
  handoff_at         timestamptz,
  assigned_agent_id  bigint REFERENCES agents(id),
  last_inbound_at    timestamptz,
  last_message_at    timestamptz NOT NULL DEFAULT now(),
  created_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, id),
  UNIQUE (hotel_id, guest_id, channel),
  FOREIGN KEY (hotel_id, guest_id) REFERENCES guests(hotel_id, id) ON DELETE CASCADE,
  FOREIGN KEY (hotel_id, sender_id) REFERENCES whatsapp_senders(hotel_id, id),
  CHECK ((channel = 'whatsapp') = (sender_id IS NOT NULL))
);
CREATE INDEX conversations_recent ON conversations (hotel_id, last_message_at DESC);

CREATE TABLE messages (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id             bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  conversation_id      bigint NOT NULL,
  direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  author               text NOT NULL CHECK (author IN ('guest', 'ai', 'agent', 'system')),
  body                 text NOT NULL CHECK (length(body) <= 20000),
  -- Twilio's MessageSid (SM… / MM…), unique across every hotel.
  provider_sid         text UNIQUE CHECK (provider_sid ~ '^[A-Z]{2}[0-9a-f]{32}$'),
  status               text NOT NULL CHECK (status IN ('received', 'pending', 'sending',
                         'accepted', 'queued', 'sent', 'delivered', 'read', 'undelivered',
                         'failed')),
  responder            text CHECK (responder IN ('openai', 'knowledge_base', 'holding')),
  in_reply_to          bigint,
  reply_state          text CHECK (reply_state IN ('pending', 'answered', 'skipped')),
  reply_claimed_until  timestamptz,
  send_claimed_until   timestamptz,
  send_attempted_at    timestamptz,
  -- Jobs that took the lease on this message (reply for inbound, send for outbound): bounds
  -- retries, so a message that can never be answered or sent ends with a handoff, not a loop.
  attempts             integer NOT NULL DEFAULT 0,
  agent_id             bigint REFERENCES agents(id),
  language             text CHECK (language ~ '^[a-z]{2,3}$'),
  num_media            integer NOT NULL DEFAULT 0 CHECK (num_media BETWEEN 0 AND 10),
  model                text,
  prompt_tokens        integer CHECK (prompt_tokens >= 0),
  completion_tokens    integer CHECK (completion_tokens >= 0),
  error_code           text CHECK (length(error_code) <= 64),
  created_at           timestamptz NOT NULL DEFAULT now(),
  sent_at              timestamptz,
  delivered_at         timestamptz,
  read_at              timestamptz,
  UNIQUE (hotel_id, id),
  FOREIGN KEY (hotel_id, conversation_id) REFERENCES conversations(hotel_id, id)
    ON DELETE CASCADE,
  FOREIGN KEY (hotel_id, in_reply_to) REFERENCES messages(hotel_id, id) ON DELETE CASCADE,
  CHECK ((direction = 'inbound') = (author = 'guest')),
  CHECK ((reply_state IS NOT NULL) = (direction = 'inbound'))
);
-- The idempotency guard of the reply job: one automated reply per inbound message, ever.
CREATE UNIQUE INDEX messages_one_automated_reply ON messages (in_reply_to)
  WHERE author IN ('ai', 'system');
CREATE INDEX messages_by_conversation ON messages (hotel_id, conversation_id, id);
CREATE INDEX messages_awaiting_reply ON messages (created_at) WHERE reply_state = 'pending';
CREATE INDEX messages_unsent ON messages (created_at)
  WHERE direction = 'outbound' AND status IN ('pending', 'sending');

CREATE TABLE kb_entries (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hotel_id       bigint NOT NULL REFERENCES hotels(id) ON DELETE CASCADE,
  title          text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  body           text NOT NULL CHECK (length(body) BETWEEN 1 AND 8000),
  search_config  regconfig NOT NULL DEFAULT 'english',
  search         tsvector GENERATED ALWAYS AS (
                   setweight(to_tsvector(search_config, title), 'A')
                   || setweight(to_tsvector(search_config, body), 'B')) STORED,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (hotel_id, id)
);
CREATE INDEX kb_entries_search ON kb_entries USING gin (search);

-- Row-level security. The application role is not the owner, so the policies always apply to it.
ALTER TABLE hotels ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON hotels USING (id = hotelchat_current_hotel());

ALTER TABLE chains ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON chains
  USING (id IN (SELECT chain_id FROM hotels WHERE id = hotelchat_current_hotel()));

ALTER TABLE agents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON agents
  USING (EXISTS (SELECT 1 FROM agent_hotels ah
                 WHERE ah.agent_id = agents.id AND ah.hotel_id = hotelchat_current_hotel()));
"""

TENANT_POLICY = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON {table}
  USING (hotel_id = hotelchat_current_hotel())
  WITH CHECK (hotel_id = hotelchat_current_hotel());
"""

# Doors that run before the tenant is known. Each is SECURITY DEFINER (runs as the owner, whom
# row-level security does not bind), returns only what routing needs, and pins search_path.
ROUTING = r"""
CREATE FUNCTION hotelchat_route_whatsapp_sender(p_phone_number text)
  RETURNS TABLE (hotel_id bigint, sender_id bigint, phone_number text, account_sid text,
                 auth_token text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT s.hotel_id, s.id, s.phone_number, s.account_sid, s.auth_token
    FROM public.whatsapp_senders s WHERE s.phone_number = p_phone_number
  $$;

CREATE FUNCTION hotelchat_route_hotel(p_slug text) RETURNS bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT h.id FROM public.hotels h WHERE h.slug = p_slug $$;

-- Work a crashed process may have left behind: inbound messages still waiting for their reply
-- and outbound messages not yet handed to the provider, older than p_min_age_seconds.
CREATE FUNCTION hotelchat_stalled_work(p_min_age_seconds integer, p_limit integer)
  RETURNS TABLE (kind text, hotel_id bigint, message_id bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    (SELECT 'reply', m.hotel_id, m.id FROM public.messages m
      WHERE m.reply_state = 'pending'
        AND m.created_at < now() - make_interval(secs => p_min_age_seconds)
        AND (m.reply_claimed_until IS NULL OR m.reply_claimed_until < now())
      ORDER BY m.created_at LIMIT p_limit)
    UNION ALL
    (SELECT 'send', m.hotel_id, m.id FROM public.messages m
      WHERE m.direction = 'outbound' AND m.status IN ('pending', 'sending')
        AND m.created_at < now() - make_interval(secs => p_min_age_seconds)
        AND (m.send_claimed_until IS NULL OR m.send_claimed_until < now())
      ORDER BY m.created_at LIMIT p_limit)
  $$;

REVOKE ALL ON FUNCTION hotelchat_route_whatsapp_sender(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_route_hotel(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_stalled_work(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_whatsapp_sender(text) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_route_hotel(text) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_stalled_work(integer, integer) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_current_hotel() TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_status_rank(text) TO hotelchat_app;
"""

GRANTS = """
GRANT USAGE ON SCHEMA public TO hotelchat_app;
GRANT SELECT ON chains, hotels, alembic_version TO hotelchat_app;
GRANT UPDATE (name, timezone, default_language, description, ai_model, ai_enabled,
              knowledge_version) ON hotels TO hotelchat_app;
GRANT SELECT, UPDATE (display_name, password_hash, disabled) ON agents TO hotelchat_app;
GRANT SELECT, INSERT, UPDATE, DELETE
  ON whatsapp_senders, guests, conversations, messages, kb_entries, agent_hotels
  TO hotelchat_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO hotelchat_app;
"""


def upgrade() -> None:
    run_sql(SCHEMA)
    for table in TENANT_TABLES:
        run_sql(TENANT_POLICY.format(table=table))
    run_sql(ROUTING)
    run_sql(GRANTS)


def downgrade() -> None:
    run_sql(
        """
        DROP FUNCTION hotelchat_stalled_work(integer, integer);
        DROP FUNCTION hotelchat_route_hotel(text);
        DROP FUNCTION hotelchat_route_whatsapp_sender(text);
        DROP TABLE kb_entries, messages, conversations, agent_hotels, agents, guests,
                   whatsapp_senders, hotels, chains;
        DROP FUNCTION hotelchat_current_hotel();
        DROP FUNCTION hotelchat_status_rank(text);
        """
    )
