"""The dashboard's assistant API: this month's AI spend for every agent of the hotel (the budget
banner), the assistant's settings for its managers.

`GET /api/assistant` answers every agent `{spend, ai_enabled, manager, settings}`: `settings` is
null unless the agent is a manager of the hotel. `PUT /api/assistant` (managers, CSRF token in
`X-CSRF-Token`) changes the settings the body names and leaves the others as they are:
`ai_enabled` (true/false), `ai_model` (a name, or null/"" for the default), `monthly_budget_usd`
(US dollars, or null for no budget), `context_token_budget` (200 to 100,000 tokens).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictInt
from quart import Blueprint, Response, jsonify

from hotelchat.domain.errors import InvalidInput
from hotelchat.entrypoints.web.context import container
from hotelchat.entrypoints.web.dashboard import _Body, parse
from hotelchat.entrypoints.web.security import checked_session, current_session
from hotelchat.services import assistant_settings
from hotelchat.services.assistant_settings import KEEP, AssistantChanges
from hotelchat.services.notify import spend_payload
from hotelchat.services.ports import AssistantSettings, Spend

blueprint = Blueprint("assistant", __name__)


class AssistantIn(_Body):
    ai_enabled: StrictBool | None = None
    ai_model: str | None = Field(default=None, max_length=assistant_settings.MAX_MODEL_CHARS * 2)
    monthly_budget_usd: float | None = Field(default=None, strict=True, allow_inf_nan=False)
    context_token_budget: StrictInt | None = None
    image_understanding: StrictBool | None = None

    def changes(self) -> AssistantChanges:
        """The settings the body names; null `ai_enabled` or `context_token_budget` is refused
        (they have no "none")."""
        given = self.model_fields_set
        for name in ("ai_enabled", "context_token_budget", "image_understanding"):
            if name in given and getattr(self, name) is None:
                raise InvalidInput(f"{name}: a value is required")
        return AssistantChanges(
            ai_enabled=self.ai_enabled if self.ai_enabled is not None else KEEP,
            ai_model=self.ai_model if "ai_model" in given else KEEP,
            monthly_budget_usd=(self.monthly_budget_usd if "monthly_budget_usd" in given else KEEP),
            context_token_budget=(
                self.context_token_budget if self.context_token_budget is not None else KEEP
            ),
            image_understanding=(
                self.image_understanding if self.image_understanding is not None else KEEP
            ),
        )


def overview_payload(settings: AssistantSettings, spend: Spend, *, manager: bool) -> dict[str, Any]:
    return {
        "spend": spend_payload(spend),
        "ai_enabled": settings.ai_enabled,
        "manager": manager,
        "settings": (
            {
                "ai_enabled": settings.ai_enabled,
                "ai_model": settings.ai_model,
                "default_model": container().deps.default_model,
                "monthly_budget_usd": settings.monthly_budget_usd,
                "context_token_budget": settings.context_token_budget,
                "image_understanding": settings.image_understanding,
            }
            if manager
            else None
        ),
    }


@blueprint.get("/api/assistant")
async def overview() -> Response:
    session = await current_session()
    deps = container().deps
    settings, spend = await assistant_settings.assistant_overview(deps, session.hotel_id)
    manager = await assistant_settings.is_manager(deps, session)
    return jsonify(overview_payload(settings, spend, manager=manager))


@blueprint.put("/api/assistant")
async def update() -> Response:
    session = await checked_session()
    body = await parse(AssistantIn)
    settings, spend = await assistant_settings.update_assistant(
        container().deps, session, body.changes()
    )
    return jsonify(overview_payload(settings, spend, manager=True))
