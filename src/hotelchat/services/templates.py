"""WhatsApp templates: each hotel's registry (synced from the Twilio Content API, or edited by
hand), what the dashboard offers an agent outside the 24-hour window, sending one, and what a
Twilio 63016 (outside the window) does to a conversation.

https://www.twilio.com/docs/content/content-api-resources,
https://www.twilio.com/docs/api/errors/63016
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from hotelchat.domain.errors import Conflict, InvalidInput, NotFound, SendError, Unavailable
from hotelchat.domain.model import Channel
from hotelchat.domain.templates import Template, check_template, check_variables, choose
from hotelchat.services import consent, notify
from hotelchat.services.inbox import check_client_id, conversation
from hotelchat.services.ports import AgentMessage, AgentSession, Deps, TemplateStore

log = structlog.get_logger(__name__)

WINDOW_CLOSED_REASON = "WhatsApp's 24-hour window has closed: send an approved template"
WINDOW_CLOSED_NOTICE = (
    "WhatsApp refused this message: the guest last wrote more than 24 hours ago (Twilio 63016). "
    "Only an approved template can reach them now; choose one below the conversation."
)


def registry(deps: Deps) -> TemplateStore:
    if deps.templates is None:
        raise Unavailable("templates are not configured")
    return deps.templates


@dataclass(frozen=True, slots=True)
class SyncResult:
    added: int
    changed: int
    removed: int
    offered: int  # approved templates now offered


async def sync_hotel(deps: Deps, hotel_id: int) -> SyncResult:
    """Make the hotel's synced templates those of its Twilio account(s), with their approval
    status (unapproved ones are kept but never offered; malformed ones are skipped). Raises
    `NotFound` (no WhatsApp number), `SendError` (Twilio could not be asked)."""
    if deps.content is None:
        raise Unavailable("the Content API is not configured")
    senders = await deps.store.whatsapp_senders(hotel_id)
    if not senders:
        raise NotFound("the hotel has no WhatsApp number to read templates with")
    found: dict[str, Template] = {}
    for account in {s.account_sid: s for s in senders}.values():
        for template in await deps.content.templates(account):
            try:
                found[template.content_sid] = check_template(template)
            except InvalidInput as exc:
                log.warning("templates.skipped", content_sid=template.content_sid,
                            error=exc.message)  # fmt: skip
    added, changed, removed = await registry(deps).replace_synced(hotel_id, list(found.values()))
    offered = sum(1 for t in found.values() if t.approved)
    log.info("templates.synced", hotel_id=hotel_id, added=added, changed=changed, removed=removed)
    return SyncResult(added, changed, removed, offered)


async def sync_all(deps: Deps) -> int:
    """Sync every hotel with a WhatsApp number (the worker's cron); a hotel whose Twilio
    account cannot be read is logged and skipped. Returns how many hotels synced."""
    done = 0
    for hotel_id in await registry(deps).hotels_to_sync():
        try:
            await sync_hotel(deps, hotel_id)
        except (SendError, NotFound) as exc:
            log.warning("templates.sync_failed", hotel_id=hotel_id, error=str(exc))
            continue
        done += 1
    return done


async def offered(
    deps: Deps, session: AgentSession, conversation_id: int
) -> tuple[list[Template], str | None]:
    """The approved templates an agent may send in this conversation, and the ContentSid to
    suggest: of the first template name, the variant in the guest's language, else the hotel's
    default language. Raises `NotFound`."""
    summary = await conversation(deps, session, conversation_id)
    if summary.channel is not Channel.WHATSAPP:
        return [], None
    templates = [t for t in await registry(deps).templates(session.hotel_id) if t.approved]
    if not templates:
        return [], None
    hotel = await deps.store.hotel_profile(session.hotel_id)
    default = hotel.default_language if hotel else None
    suggested = choose(templates, templates[0].friendly_name, [summary.guest_language, default])
    return templates, suggested.content_sid if suggested else None


async def send_template(
    deps: Deps,
    session: AgentSession,
    conversation_id: int,
    *,
    content_sid: str,
    variables: Mapping[str, object],
    client_id: str,
) -> AgentMessage:
    """Send one of the hotel's approved templates to the guest as the agent (allowed outside
    the 24-hour window), stored with its rendered preview as the body. Raises `InvalidInput`
    (variables: code `invalid_variables`), `NotFound` (no such template in this hotel, or
    conversation), `Conflict` (not approved; another agent owns it; the guest opted out)."""
    checked_client = check_client_id(client_id)
    summary = await conversation(deps, session, conversation_id)
    template = next(
        (t for t in await registry(deps).templates(session.hotel_id)
         if t.content_sid == content_sid), None,
    )  # fmt: skip
    if template is None:
        raise NotFound("no such template in this hotel")
    if not template.approved:
        raise Conflict("this template is not approved by WhatsApp", code="template_not_approved")
    values = check_variables(template, variables)
    if summary.guest_phone and await consent.is_number_opted_out(
        deps, session.hotel_id, summary.guest_phone
    ):
        raise Conflict("the guest opted out of messages from the hotel", code="opted_out")
    stored = await registry(deps).add_template_message(
        session.hotel_id, conversation_id, session.agent_id,
        template=template, variables=values, client_id=checked_client,
    )  # fmt: skip
    if not stored.created:
        return stored
    await deps.stop_signals.stop(conversation_id)
    try:
        await deps.jobs.enqueue_send(session.hotel_id, stored.message_id)
    except Unavailable:
        log.warning("template.enqueue_failed", message_id=stored.message_id)  # sweeper sends it
    await notify.message_added(
        deps, session.hotel_id, conversation_id, stored.message_id, guest_channel=None
    )
    await notify.conversation_changed(deps, stored.conversation)
    log.info("agent.template_sent", conversation_id=conversation_id, content_sid=content_sid)
    return stored


async def window_closed(deps: Deps, hotel_id: int, message_id: int) -> None:
    """Twilio refused `message_id` with 63016: mark the conversation's window closed (the
    dashboard then offers templates) and tell staff, in the conversation, to use a template."""
    marked = await registry(deps).mark_window_closed(
        hotel_id, message_id, notice=WINDOW_CLOSED_NOTICE, reason=WINDOW_CLOSED_REASON
    )
    if marked is None:
        return
    conversation_id, notice_id = marked
    log.info("send.window_closed", hotel_id=hotel_id, message_id=message_id)
    await notify.message_added(deps, hotel_id, conversation_id, notice_id, guest_channel=None)
    await notify.conversation_touched(deps, hotel_id, conversation_id)
