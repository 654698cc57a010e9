"""What a hotel's managers set for its assistant (on or off, the model, how much conversation it
sees, a monthly budget in US dollars) and what the assistant spent this month.

Every agent of the hotel may read the spend (the dashboard's budget banner) and whether the
assistant is on; only the hotel's managers read and change the other settings (and operators,
through `hotelchat hotels settings`). After a change the hotel's dashboards get a `budget` event,
so a raised budget lifts the "budget reached" banner at once.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass

import structlog

from hotelchat.domain.errors import Forbidden, InvalidInput
from hotelchat.services import notify
from hotelchat.services.ports import AgentSession, AssistantSettings, Deps, Spend

log = structlog.get_logger(__name__)

MAX_BUDGET_USD = 1_000_000.0
MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS = 200, 100_000  # as the table's check
MAX_MODEL_CHARS = 100
# OpenAI's names ("gpt-4o-mini", "ft:gpt-4o-mini:org::abc") and other servers' ("org/model").
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")


class Keep(enum.Enum):
    """A setting left as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class AssistantChanges:
    """The settings to change; `KEEP` leaves one as it is.

    `ai_model` None (or "") means the deployment's default model; `monthly_budget_usd` None
    means no budget (US dollars, rounded to cents); `context_token_budget` is in tokens."""

    ai_enabled: bool | Keep = KEEP
    ai_model: str | Keep | None = KEEP
    monthly_budget_usd: float | Keep | None = KEEP
    context_token_budget: int | Keep = KEEP
    image_understanding: bool | Keep = KEEP  # photos to the model (it must see images)

    def changed(self) -> list[str]:
        """The names of the settings this changes."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not KEEP]


def _budget(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("monthly budget: a number of US dollars, or none")
    if not 0 <= value <= MAX_BUDGET_USD:
        raise InvalidInput(f"monthly budget: 0 to {MAX_BUDGET_USD:,.0f} US dollars, or none")
    return round(float(value), 2)


def _model(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_MODEL_CHARS or not MODEL_NAME.fullmatch(value):
        raise InvalidInput(
            f"model: a model name of at most {MAX_MODEL_CHARS} characters (letters, digits and "
            ". _ : / @ + -), or empty for the default"
        )
    return value


def _context_tokens(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("context tokens: a whole number")
    if not MIN_CONTEXT_TOKENS <= value <= MAX_CONTEXT_TOKENS:
        raise InvalidInput(
            f"context tokens: {MIN_CONTEXT_TOKENS:,} to {MAX_CONTEXT_TOKENS:,} tokens"
        )
    return value


def apply_changes(current: AssistantSettings, changes: AssistantChanges) -> AssistantSettings:
    """`current` with `changes` made, each checked; raises `InvalidInput` naming the first bad
    setting."""
    settings = current
    if changes.ai_enabled is not KEEP:
        if not isinstance(changes.ai_enabled, bool):
            raise InvalidInput("AI: on or off")
        settings = dataclasses.replace(settings, ai_enabled=changes.ai_enabled)
    if changes.image_understanding is not KEEP:
        if not isinstance(changes.image_understanding, bool):
            raise InvalidInput("image understanding: on or off")
        settings = dataclasses.replace(settings, image_understanding=changes.image_understanding)
    if changes.ai_model is not KEEP:
        settings = dataclasses.replace(settings, ai_model=_model(changes.ai_model))
    if changes.monthly_budget_usd is not KEEP:
        settings = dataclasses.replace(
            settings, monthly_budget_usd=_budget(changes.monthly_budget_usd)
        )
    if changes.context_token_budget is not KEEP:
        settings = dataclasses.replace(
            settings, context_token_budget=_context_tokens(changes.context_token_budget)
        )
    return settings


async def is_manager(deps: Deps, session: AgentSession) -> bool:
    """Whether the agent is a manager of their current hotel."""
    memberships = await deps.agents.memberships(session.agent_id)
    return any(m.hotel_id == session.hotel_id and m.role == "manager" for m in memberships)


async def assistant_overview(deps: Deps, hotel_id: int) -> tuple[AssistantSettings, Spend]:
    """Hotel `hotel_id`'s assistant settings and this month's spend (its time zone, US
    dollars). Raises `NotFound` or `Unavailable`."""
    return await deps.hotels.assistant_settings(hotel_id), await deps.hotels.month_spend(hotel_id)


async def change_assistant(
    deps: Deps, hotel_id: int, changes: AssistantChanges
) -> tuple[AssistantSettings, Spend]:
    """Make `changes` to hotel `hotel_id`'s assistant settings (for operators: no role check),
    then tell the hotel's dashboards the budget as it now stands. Returns the settings and this
    month's spend. Raises `InvalidInput` (a bad value; nothing is changed), `NotFound` or
    `Unavailable`."""
    current = await deps.hotels.assistant_settings(hotel_id)
    wanted = apply_changes(current, changes)
    settings = current
    if wanted != current:
        # Only what this request changes: a concurrent change of another setting stands.
        changed = {name: getattr(wanted, name) for name in changes.changed()
                   if getattr(wanted, name) != getattr(current, name)}  # fmt: skip
        settings = await deps.hotels.update_assistant_settings(hotel_id, changed)
    spend = await deps.hotels.month_spend(hotel_id)
    if wanted != current:
        log.info("assistant.settings_changed", hotel_id=hotel_id, settings=changes.changed())
        await notify.budget_changed(deps, hotel_id, spend)
    return settings, spend


async def update_assistant(
    deps: Deps, session: AgentSession, changes: AssistantChanges
) -> tuple[AssistantSettings, Spend]:
    """`change_assistant` for the agent's current hotel, by one of its managers. Raises
    `Forbidden` for anyone else, and what `change_assistant` raises."""
    if not await is_manager(deps, session):
        raise Forbidden("only the hotel's managers change the assistant's settings")
    settings, spend = await change_assistant(deps, session.hotel_id, changes)
    log.info("assistant.settings_saved", hotel_id=session.hotel_id, agent_id=session.agent_id)
    return settings, spend
