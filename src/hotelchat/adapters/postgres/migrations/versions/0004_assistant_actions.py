"""The assistant's actions and spend: replies answered from the response cache, the tool calls
behind a reply, service requests tied to the guest message that asked for them (so a re-run job
never files one twice), and a hotel's month counted in its own time zone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from hotelchat.adapters.postgres.migrations.sql import run_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE messages DROP CONSTRAINT messages_responder_check;
ALTER TABLE messages ADD CONSTRAINT messages_responder_check
  CHECK (responder IN ('openai', 'knowledge_base', 'holding', 'cache'));

-- What the assistant did to write a reply: [{name, arguments, outcome}], shown to staff.
ALTER TABLE messages ADD COLUMN tool_calls jsonb
  CHECK (tool_calls IS NULL OR jsonb_typeof(tool_calls) = 'array');

-- The guest message a service request answers; one request of a kind per message.
ALTER TABLE service_requests ADD COLUMN message_id bigint;
CREATE UNIQUE INDEX service_requests_once ON service_requests (hotel_id, message_id, kind)
  WHERE message_id IS NOT NULL;

-- The first instant of the current month in time zone `p_timezone` (an IANA name; an unknown
-- one counts as UTC rather than failing a reply).
CREATE FUNCTION hotelchat_month_start(p_timezone text) RETURNS timestamptz
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    RETURN date_trunc('month', now() AT TIME ZONE p_timezone) AT TIME ZONE p_timezone;
  EXCEPTION WHEN invalid_parameter_value THEN
    RETURN date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  END
  $$;
GRANT EXECUTE ON FUNCTION hotelchat_month_start(text) TO hotelchat_app;

CREATE OR REPLACE FUNCTION hotelchat_ai_spend()
  RETURNS TABLE (hotel_slug text, spent_usd numeric, budget_usd numeric)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT h.slug, COALESCE(sum(m.cost_usd), 0), h.monthly_budget_usd
    FROM public.hotels h
    LEFT JOIN public.messages m ON m.hotel_id = h.id AND m.cost_usd IS NOT NULL
      AND m.created_at >= public.hotelchat_month_start(h.timezone)
    GROUP BY h.slug, h.monthly_budget_usd
  $$;

-- When the link that tied a reservation to its web-chat guest was issued: only a link issued
-- later moves the reservation to another guest, so a used link that leaks takes nothing over.
ALTER TABLE reservations ADD COLUMN web_link_issued_at timestamptz;
"""

DOWNGRADE = r"""
ALTER TABLE reservations DROP COLUMN web_link_issued_at;
CREATE OR REPLACE FUNCTION hotelchat_ai_spend()
  RETURNS TABLE (hotel_slug text, spent_usd numeric, budget_usd numeric)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT h.slug, COALESCE(sum(m.cost_usd), 0), h.monthly_budget_usd
    FROM public.hotels h
    LEFT JOIN public.messages m ON m.hotel_id = h.id AND m.cost_usd IS NOT NULL
      AND m.created_at >= date_trunc('month', now())
    GROUP BY h.slug, h.monthly_budget_usd
  $$;
DROP FUNCTION hotelchat_month_start(text);
DROP INDEX service_requests_once;
ALTER TABLE service_requests DROP COLUMN message_id;
ALTER TABLE messages DROP COLUMN tool_calls;
UPDATE messages SET responder = 'openai' WHERE responder = 'cache';
ALTER TABLE messages DROP CONSTRAINT messages_responder_check;
ALTER TABLE messages ADD CONSTRAINT messages_responder_check
  CHECK (responder IN ('openai', 'knowledge_base', 'holding'));
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
