"""The dashboard's template API: the hotel's approved WhatsApp templates an agent may send in a
conversation (the only way to reach a guest outside the 24-hour window), and sending one.

`GET /api/conversations/<id>/templates` lists them with the ContentSid to suggest (the guest's
language, else the hotel's default); `POST` sends one with its variables. Both work in the
agent's current hotel only: another hotel's conversation or template is a 404. Variables are
checked here as in the browser (`domain.templates.check_variables`): a 400 `invalid_variables`
names each problem. https://www.twilio.com/docs/api/errors/63016

`GET /api/journeys` shows a hotel's managers its journeys (configured with `hotelchat journeys`);
other agents get 403.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response, jsonify

from hotelchat.domain.errors import Forbidden
from hotelchat.domain.templates import MAX_BODY_CHARS, MAX_VARIABLE_CHARS, Journey, Template
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import _Body, checked_id, conversation_payload, parse
from hotelchat.entrypoints.web.security import checked_session, current_session
from hotelchat.services import assistant_settings, templates

blueprint = Blueprint("templates_api", __name__)


class TemplateSendIn(_Body):
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    variables: dict[str, str] = Field(default_factory=dict, max_length=20)
    client_id: str = Field(min_length=32, max_length=40)


def template_payload(template: Template) -> dict[str, Any]:
    return {
        "content_sid": template.content_sid,
        "name": template.friendly_name,
        "language": template.language,
        "body": template.body,
        "placeholders": template.placeholders,
        "samples": dict(template.variables),
    }


@blueprint.get("/api/conversations/<int:conversation_id>/templates")
async def list_templates(conversation_id: int) -> Response:
    session = await current_session()
    found, suggested = await templates.offered(
        container().deps, session, checked_id(conversation_id)
    )
    return jsonify(
        {
            "templates": [template_payload(t) for t in found],
            "suggested": suggested,
            "limits": {"body": MAX_BODY_CHARS, "variable": MAX_VARIABLE_CHARS},
        }
    )


@blueprint.post("/api/conversations/<int:conversation_id>/templates")
async def send_template(conversation_id: int) -> tuple[Response, int]:
    session = await checked_session()
    body = await parse(TemplateSendIn)
    stored = await templates.send_template(
        container().deps,
        session,
        checked_id(conversation_id),
        content_sid=body.content_sid,
        variables=body.variables,
        client_id=body.client_id,
    )
    return jsonify(
        {"id": stored.message_id, "conversation": conversation_payload(stored.conversation)}
    ), (201 if stored.created else 200)


def journey_payload(journey: Journey) -> dict[str, Any]:
    quiet = None
    if journey.quiet_start is not None and journey.quiet_end is not None:
        quiet = f"{journey.quiet_start:%H:%M}-{journey.quiet_end:%H:%M}"
    return {
        "name": journey.name,
        "template": journey.template_name,
        "anchor": journey.anchor,
        "offset_days": journey.offset_days,
        "send_time": f"{journey.send_time:%H:%M}",
        "quiet_hours": quiet,
        "variables": dict(journey.variables),
        "enabled": journey.enabled,
    }


@blueprint.get("/api/journeys")
async def list_journeys() -> Response:
    session = await current_session()
    deps = container().deps
    if not await assistant_settings.is_manager(deps, session):
        raise Forbidden("only the hotel's managers see its journeys")
    found = await templates.registry(deps).journeys(session.hotel_id)
    return jsonify({"journeys": [journey_payload(j) for j in found]})
