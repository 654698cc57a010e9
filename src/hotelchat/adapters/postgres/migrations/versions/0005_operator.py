"""Tenants managed by the Kubernetes operator: the operator's own role (provisions, reads no
guest data), hotels that are suspended or owned by a `Hotel` resource, WhatsApp numbers that are
retired instead of deleted, Twilio auth tokens encrypted at rest, one-time agent passwords, and
the one door that erases a tenant.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the operator provisions; it has no privilege at all on guests, conversations, messages,
# reservations or service requests.
OPERATOR_TABLES = ("chains", "hotels", "whatsapp_senders", "agents", "agent_hotels", "kb_entries")

UPGRADE = r"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hotelchat_operator') THEN
    CREATE ROLE hotelchat_operator NOLOGIN;
  END IF;
END
$$;

-- A suspended hotel's numbers answer as unknown ones and its assistant is silent. A hotel owned
-- by a Hotel resource (its metadata.uid) is changed by the operator only; NULL: by hand.
ALTER TABLE hotels ADD COLUMN suspended boolean NOT NULL DEFAULT false;
ALTER TABLE hotels ADD COLUMN languages text[] NOT NULL DEFAULT '{en}'
  CHECK (cardinality(languages) BETWEEN 1 AND 20);
ALTER TABLE hotels ADD COLUMN resource_uid text UNIQUE CHECK (length(resource_uid) <= 128);
ALTER TABLE hotels ADD COLUMN resource_name text CHECK (length(resource_name) <= 320);
UPDATE hotels SET languages = ARRAY[default_language];

-- A number is retired, never deleted (its conversations refer to it): a retired number routes
-- nowhere, and may be routed again, to this hotel or another.
ALTER TABLE whatsapp_senders ADD COLUMN retired_at timestamptz;
ALTER TABLE whatsapp_senders DROP CONSTRAINT whatsapp_senders_phone_number_key;
CREATE UNIQUE INDEX whatsapp_senders_routed ON whatsapp_senders (phone_number)
  WHERE retired_at IS NULL;
CREATE UNIQUE INDEX whatsapp_senders_hotel_number ON whatsapp_senders (hotel_id, phone_number);

-- Auth tokens at rest: a Fernet token (AES-128-CBC + HMAC-SHA256) made with ENCRYPTION_KEYS.
-- A plain `auth_token` is only what was stored before this revision, until `hotelchat migrate`
-- runs with ENCRYPTION_KEYS and encrypts it.
ALTER TABLE whatsapp_senders ADD COLUMN auth_token_ciphertext text
  CHECK (length(auth_token_ciphertext) BETWEEN 100 AND 1024);
ALTER TABLE whatsapp_senders ALTER COLUMN auth_token DROP NOT NULL;
ALTER TABLE whatsapp_senders ADD CONSTRAINT whatsapp_senders_one_token
  CHECK (num_nonnulls(auth_token, auth_token_ciphertext) = 1);

-- An agent whose password was made for them (a one-time password) must choose their own. An
-- agent changes their own password through these doors (agents are no tenant's rows).
ALTER TABLE agents ADD COLUMN password_change_required boolean NOT NULL DEFAULT false;
CREATE FUNCTION hotelchat_agent_password(p_agent_id bigint)
  RETURNS TABLE (password_hash text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT a.password_hash FROM public.agents a WHERE a.id = p_agent_id AND NOT a.disabled $$;
CREATE FUNCTION hotelchat_change_agent_password(p_agent_id bigint, p_password_hash text)
  RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ UPDATE public.agents SET password_hash = p_password_hash,
          password_change_required = false WHERE id = p_agent_id $$;
REVOKE ALL ON FUNCTION hotelchat_agent_password(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION hotelchat_change_agent_password(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_agent_password(bigint) TO hotelchat_app;
GRANT EXECUTE ON FUNCTION hotelchat_change_agent_password(bigint, text) TO hotelchat_app;

-- Routing skips retired numbers and suspended hotels.
DROP FUNCTION hotelchat_route_whatsapp_sender(text);
CREATE FUNCTION hotelchat_route_whatsapp_sender(p_phone_number text)
  RETURNS TABLE (hotel_id bigint, sender_id bigint, phone_number text, account_sid text,
                 auth_token text, auth_token_ciphertext text, hotel_slug text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT s.hotel_id, s.id, s.phone_number, s.account_sid, s.auth_token,
           s.auth_token_ciphertext, h.slug
    FROM public.whatsapp_senders s JOIN public.hotels h ON h.id = s.hotel_id
    WHERE s.phone_number = p_phone_number AND s.retired_at IS NULL AND NOT h.suspended
  $$;
REVOKE ALL ON FUNCTION hotelchat_route_whatsapp_sender(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_whatsapp_sender(text) TO hotelchat_app;

-- A suspended hotel's web chat is gone for guests; staff tools still find it.
DROP FUNCTION hotelchat_route_hotel(text);
CREATE FUNCTION hotelchat_route_hotel(p_slug text, p_for_guests boolean DEFAULT true)
  RETURNS bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT h.id FROM public.hotels h
        WHERE h.slug = p_slug AND NOT (p_for_guests AND h.suspended) $$;
REVOKE ALL ON FUNCTION hotelchat_route_hotel(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_hotel(text, boolean) TO hotelchat_app;

-- Erase a tenant (a Hotel deleted with deletionPolicy Delete): every row of the hotel, in one
-- transaction, with how many of each. The operator may call it, though it may read none of them.
CREATE FUNCTION hotelchat_erase_hotel(p_hotel_id bigint)
  RETURNS TABLE (kind text, deleted bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    n bigint;
  BEGIN
    DELETE FROM public.service_requests WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'service_requests'; deleted := n; RETURN NEXT;
    DELETE FROM public.messages WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'messages'; deleted := n; RETURN NEXT;
    DELETE FROM public.conversations WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'conversations'; deleted := n; RETURN NEXT;
    DELETE FROM public.guests WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'guests'; deleted := n; RETURN NEXT;
    DELETE FROM public.reservations WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'reservations'; deleted := n; RETURN NEXT;
    DELETE FROM public.kb_entries WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'knowledge_entries'; deleted := n; RETURN NEXT;
    DELETE FROM public.agent_sessions WHERE hotel_id = p_hotel_id;
    DELETE FROM public.agent_hotels WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'agent_memberships'; deleted := n; RETURN NEXT;
    DELETE FROM public.whatsapp_senders WHERE hotel_id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'whatsapp_senders'; deleted := n; RETURN NEXT;
    DELETE FROM public.hotels WHERE id = p_hotel_id;
    GET DIAGNOSTICS n = ROW_COUNT; kind := 'hotels'; deleted := n; RETURN NEXT;
  END
  $$;
REVOKE ALL ON FUNCTION hotelchat_erase_hotel(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_erase_hotel(bigint) TO hotelchat_operator;

-- The operator's privileges: the provisioning tables, all their rows (its policies below), and
-- the sessions of agents it removes from a hotel. Nothing of guests and their conversations.
GRANT USAGE ON SCHEMA public TO hotelchat_operator;
GRANT SELECT ON alembic_version TO hotelchat_operator;
GRANT SELECT, INSERT, UPDATE ON chains, hotels, whatsapp_senders, agents TO hotelchat_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_hotels, kb_entries TO hotelchat_operator;
GRANT SELECT, DELETE ON agent_sessions TO hotelchat_operator;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO hotelchat_operator;
GRANT EXECUTE ON FUNCTION hotelchat_current_hotel() TO hotelchat_operator;
"""

OPERATOR_POLICY = """
CREATE POLICY operator ON {table} TO hotelchat_operator USING (true) WITH CHECK (true);
"""

DOWNGRADE = r"""
DROP POLICY operator ON chains;
DROP POLICY operator ON hotels;
DROP POLICY operator ON whatsapp_senders;
DROP POLICY operator ON agents;
DROP POLICY operator ON agent_hotels;
DROP POLICY operator ON kb_entries;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM hotelchat_operator;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM hotelchat_operator;
REVOKE ALL ON SCHEMA public FROM hotelchat_operator;
REVOKE ALL ON FUNCTION hotelchat_current_hotel() FROM hotelchat_operator;
DROP FUNCTION hotelchat_erase_hotel(bigint);
DROP FUNCTION hotelchat_route_hotel(text, boolean);
CREATE FUNCTION hotelchat_route_hotel(p_slug text) RETURNS bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$ SELECT h.id FROM public.hotels h WHERE h.slug = p_slug $$;
REVOKE ALL ON FUNCTION hotelchat_route_hotel(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotelchat_route_hotel(text) TO hotelchat_app;
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
DROP FUNCTION hotelchat_change_agent_password(bigint, text);
DROP FUNCTION hotelchat_agent_password(bigint);
ALTER TABLE agents DROP COLUMN password_change_required;
-- Encrypted tokens cannot be turned back into plain ones here: the downgrade refuses them.
DELETE FROM whatsapp_senders WHERE retired_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.sender_id = whatsapp_senders.id);
ALTER TABLE whatsapp_senders DROP CONSTRAINT whatsapp_senders_one_token;
ALTER TABLE whatsapp_senders ALTER COLUMN auth_token SET NOT NULL;
ALTER TABLE whatsapp_senders DROP COLUMN auth_token_ciphertext;
DROP INDEX whatsapp_senders_hotel_number;
DROP INDEX whatsapp_senders_routed;
ALTER TABLE whatsapp_senders ADD CONSTRAINT whatsapp_senders_phone_number_key UNIQUE (phone_number);
ALTER TABLE whatsapp_senders DROP COLUMN retired_at;
ALTER TABLE hotels DROP COLUMN resource_name, DROP COLUMN resource_uid, DROP COLUMN languages,
  DROP COLUMN suspended;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    for table in OPERATOR_TABLES:
        run_sql(OPERATOR_POLICY.format(table=table))


def downgrade() -> None:
    run_sql(DOWNGRADE)
