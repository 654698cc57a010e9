"""Answer one inbound guest message: re-read it, skip it if it is not the assistant's turn, ask
the model (or the knowledge base), check the answer, store the one reply, and send it.

Idempotent by construction. PostgreSQL holds the guard: a lease on the inbound message while the
answer is being produced, and a unique index that admits one automated reply per inbound message.
Run twice, or re-run after the worker died at any point, and the guest still gets exactly one
reply: a second run finds the stored reply and only finishes sending it (see `services.outbound`).

The model's answer streams, sentence by sentence, to agents watching the conversation and to a
web-chat guest; WhatsApp gets only the finished reply. An agent taking the conversation over stops
the stream at once. A stream that fails midway is withdrawn from screens (`ai_aborted`), and the
guest gets the holding message instead: nothing partial is ever sent.

Before the model is asked: the hotel's monthly budget (spent: holding message, handoff), the
response cache (the same first question, same knowledge, same language: the earlier answer), the
shared circuit breaker (open: outage mode, holding message, handoff) and a shared concurrency slot
(none free in time: the job is retried). No lock is held while the model answers; the lease on
the inbound message is a timestamp in PostgreSQL, short (REPLY_LEASE_SECONDS) and renewed while
the reply is produced, so a worker that dies mid-reply holds it up for one lease length at most.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import structlog

from hotelchat.domain.errors import ModelError, TemporaryFailure, Unavailable
from hotelchat.domain.guard import Verdict, check_reply
from hotelchat.domain.language import (
    handoff_message,
    holding_message,
    pick_language,
    transfer_message,
)
from hotelchat.domain.media import MediaState, describe_media, is_image
from hotelchat.domain.model import MAX_REPLY_BODY_CHARS, Author, Passage, Responder
from hotelchat.domain.pricing import PriceTable
from hotelchat.observability import metrics
from hotelchat.services import assistant_tools, consent, knowledge, leases, media, notify, outbound
from hotelchat.services.ports import (
    Busy,
    CachedAnswer,
    Completion,
    Deps,
    DraftReply,
    Gone,
    PromptMessage,
    ReplyAlreadyStored,
    ReplyClaimed,
    ReplyContext,
    ReplySkipped,
    ReplyStored,
    Spend,
    ToolUse,
)
from hotelchat.services.prompts import Prompt, build_prompt

log = structlog.get_logger(__name__)

# Stream chunks are sent to screens at most this often (seconds); the stop signal is checked as
# often.
STREAM_FLUSH_SECONDS = 0.1
# A sentence longer than this is shown up to its last whole word before it ends.
STREAM_MAX_HELD_CHARS = 80
# Rounds of tool calls before the model must answer in words.
MAX_TOOL_ROUNDS = 3
# The longest reply: three of Twilio's 1,600-character messages; a reply over one message's
# limit goes out in parts (`domain.splitting`, `services.outbound`).
MAX_REPLY_CHARS = MAX_REPLY_BODY_CHARS
# Model errors that say the provider is down or refusing us: they count towards opening the
# shared circuit breaker. Others (a bad request, a bad answer) show it is up.
OUTAGE_KINDS = frozenset({"timeout", "connection", "server_error", "rate_limited", "quota", "auth"})
# Shares of the monthly budget at which the dashboards are told (80 %: warn; 100 %: stopped).
BUDGET_WARNING_LINES = (0.8, 1.0)
# Bump when the prompt changes in a way that should not reuse cached answers.
PROMPT_VERSION = "2"
MAX_CACHED_QUESTION_CHARS = 300
_PUNCTUATION = re.compile(r"[^\w\s]+", re.UNICODE)
# A sentence ends at . ! ? … before a space, at a CJK full stop, ! or ?, or at a line break.
_SENTENCE_END = re.compile(r"[.!?…](?:\s|$)|[\u3002\uff01\uff1f]|\n")


class ReplyStopped(Exception):
    """An agent took the conversation over while the assistant was answering."""


async def reply_to_inbound(deps: Deps, hotel_id: int, message_id: int) -> str:
    """Produce, store and send the automated reply to inbound message `message_id`.

    Returns what happened (`sent`, `skipped: …`, `stopped: …`, `gone`, …) for logs and tests.
    Raises `TemporaryFailure` when the work should be retried later (another job holds the
    lease, the provider failed in a way that may pass) and `Unavailable` when PostgreSQL is down.
    An opt-out or opt-in keyword (STOP, START…) is never shown to the model: `services.consent`
    applies it and confirms it instead, whoever owns the conversation.
    """
    keyword = await consent.handle_keyword(deps, hotel_id, message_id)
    if keyword is not None:
        return keyword
    claim = await deps.store.claim_reply(
        hotel_id,
        message_id,
        lease_seconds=deps.reply_lease_seconds,
        history_turns=deps.history_turns,
        max_attempts=deps.max_attempts,
    )
    match claim:
        case Gone():
            return "gone"
        case ReplySkipped(reason, handoff):
            log.info("reply.skipped", hotel_id=hotel_id, message_id=message_id, reason=reason)
            if handoff is not None:
                await _handed_off(deps, hotel_id, None, handoff)
            return f"skipped: {reason}"
        case Busy(retry_in):
            raise TemporaryFailure("another job is answering", defer_seconds=retry_in)
        case ReplyAlreadyStored(reply_id, needs_send):
            if not needs_send:
                return "already answered"
            return await outbound.send_outbound(deps, hotel_id, reply_id)
        case ReplyClaimed(context):
            pass

    try:
        async with _reply_lease_kept(deps, hotel_id, message_id):
            draft = await draft_reply(deps, hotel_id, context, message_id)
            stored = await deps.store.store_reply(hotel_id, message_id, draft)
    except ReplyStopped:
        await notify.ai_event(
            deps, "ai_aborted", context.conversation_id, message_id, channel=context.channel
        )
        log.info("reply.stopped", hotel_id=hotel_id, message_id=message_id)
        return "stopped: an agent took over"
    except BaseException:
        # Cancelled (job timeout, shutdown), PostgreSQL gone, or a bug: let the next attempt
        # start at once instead of waiting out the lease. Best effort; the lease expires anyway.
        with contextlib.suppress(Unavailable):
            await deps.store.release_reply(hotel_id, message_id)
        raise
    match stored:
        case Gone():
            return "gone"
        case ReplySkipped(reason):
            await notify.ai_event(
                deps, "ai_aborted", context.conversation_id, message_id, channel=context.channel
            )
            log.info("reply.discarded", hotel_id=hotel_id, message_id=message_id, reason=reason)
            return f"skipped: {reason}"
        case ReplyStored(reply_id):
            pass
    log.info(
        "reply.stored",
        hotel_id=hotel_id,
        message_id=message_id,
        reply_id=reply_id,
        responder=draft.responder.value,
        handoff=draft.handoff_reason is not None,
    )
    metrics.AI_REPLIES.labels(context.hotel.slug, draft.responder.value).inc()
    if draft.cost_usd:
        metrics.AI_COST.labels(context.hotel.slug, draft.model or "unknown").inc(draft.cost_usd)
        await _after_spend(deps, hotel_id, context, draft.cost_usd)
    await notify.ai_event(
        deps, "ai_done", context.conversation_id, message_id, channel=context.channel
    )
    await notify.message_added(
        deps, hotel_id, context.conversation_id, reply_id, guest_channel=None
    )
    if draft.handoff_kind is not None:
        await _handed_off(deps, hotel_id, context.hotel.slug, draft.handoff_kind)
    return await outbound.send_outbound(deps, hotel_id, reply_id)


def _reply_lease_kept(
    deps: Deps, hotel_id: int, message_id: int
) -> contextlib.AbstractAsyncContextManager[None]:
    """Renew the reply lease while the reply is produced: a short lease that a dead worker
    loses within `reply_lease_seconds`, a live one keeps (`services.leases`)."""
    lease = deps.reply_lease_seconds
    return leases.kept_alive(
        lambda: deps.store.renew_reply_lease(hotel_id, message_id, lease_seconds=lease),
        every=leases.renew_every(lease),
        for_at_most=deps.lease_renewal_limit_seconds,
        what="reply",
    )


async def _handed_off(deps: Deps, hotel_id: int, slug: str | None, kind: str) -> None:
    metrics.HANDOFFS.labels(slug or str(hotel_id), kind).inc()


async def _after_spend(deps: Deps, hotel_id: int, context: ReplyContext, cost: float) -> None:
    """Update the budget gauge and, when this reply crossed 80 % or 100 % of the hotel's
    monthly budget, tell its dashboards."""
    budget = context.hotel.monthly_budget_usd
    if budget is None:
        return
    before, after = context.month_spend_usd, context.month_spend_usd + cost
    spend = Spend(spent_usd=after, budget_usd=budget)
    metrics.AI_BUDGET_USED.labels(context.hotel.slug).set(spend.used or 0.0)
    if any(before < line * budget <= after for line in BUDGET_WARNING_LINES):
        log.warning(
            "budget.crossed", hotel_id=hotel_id, spent_usd=round(after, 4), budget_usd=budget
        )
        await notify.budget_changed(deps, hotel_id, spend)


async def draft_reply(
    deps: Deps, hotel_id: int, context: ReplyContext, message_id: int = 0
) -> DraftReply:
    """The reply to `context.question`.

    With a chat model: nothing from the model when the hotel's monthly budget is spent or the
    provider is in outage (a holding message and a handoff); the cached answer to the same first
    question when there is one; else the model, grounded in the best knowledge-base passages,
    with tools, its reply checked (`domain.guard`) before anyone sees it. Without a chat model:
    the best knowledge-base passage, or a handoff. What the guest sent besides text is named
    after the question ("the guest sent a photo"); media alone goes to staff, unless the hotel
    shows photos to the model (image understanding), which then sees them. Raises
    `ReplyStopped` when an agent takes the conversation over while the model answers, and
    `TemporaryFailure` when no model call slot came free in time or a photo the model is to
    see is still being downloaded.
    """
    hotel = context.hotel
    language = pick_language(
        context.question_language, context.guest_language, hotel.default_language
    )
    images: tuple[str, ...] = ()
    if context.media:
        sent = describe_media([m.content_type for m in context.media])
        if _sees_images(deps, context):
            images = await _image_urls(deps, hotel_id, context)
        if not context.question.strip() and not images:
            # A photo, voice note or file with no text: staff can see it, the assistant not.
            return DraftReply(
                body=handoff_message(language),
                author=Author.AI,
                responder=Responder.KNOWLEDGE_BASE if deps.chat_model is None else Responder.OPENAI,
                language=language,
                handoff_reason=sent,
                handoff_kind="media",
            )
        context = replace(context, question=f"{context.question}\n\n({sent})".strip())
    if deps.chat_model is None:
        retrieval = await knowledge.retrieve(
            deps, hotel_id, context.question, limit=deps.passages_per_prompt
        )
        return answer_from_knowledge(retrieval, language)
    model = hotel.ai_model or deps.default_model
    if hotel.monthly_budget_usd is not None and context.month_spend_usd >= hotel.monthly_budget_usd:
        metrics.AI_ERRORS.labels(hotel.slug, model, "budget").inc()
        log.info("reply.over_budget", hotel_id=hotel_id, conversation_id=context.conversation_id)
        return _for_staff(language, "the monthly AI budget is spent", "budget")
    cache_key = (
        answer_cache_key(context, model)
        if deps.answer_cache is not None and not context.media
        else None
    )
    if cache_key is not None and deps.answer_cache is not None:
        cached = await deps.answer_cache.get(hotel_id, cache_key)
        if cached is not None:
            return DraftReply(
                body=cached.body,
                author=Author.AI,
                responder=Responder.CACHE,
                language=cached.language,
                sources=cached.sources,
                model=cached.model,
                cost_usd=0.0,
            )
    retrieval = await knowledge.retrieve(
        deps, hotel_id, context.question, limit=deps.passages_per_prompt
    )
    if deps.breaker is not None and not await deps.breaker.allow():
        metrics.AI_ERRORS.labels(hotel.slug, model, "circuit_open").inc()
        log.warning("reply.outage_mode", hotel_id=hotel_id, conversation_id=context.conversation_id)
        return _for_staff(
            language,
            "the assistant is unavailable (provider outage)",
            "outage",
            sources=tuple(retrieval.passages),
        )
    return await _Conversation(deps, hotel_id, context, message_id, model, language).answer(
        retrieval.passages, cache_key, images
    )


def _sees_images(deps: Deps, context: ReplyContext) -> bool:
    """Whether the model is shown the guest's photos: the hotel turned image understanding on,
    there is a model, and everything the guest sent is a photo."""
    return (
        context.hotel.image_understanding
        and deps.chat_model is not None
        and bool(context.media)
        and all(is_image(m.content_type) for m in context.media)
    )


async def _image_urls(deps: Deps, hotel_id: int, context: ReplyContext) -> tuple[str, ...]:
    """The guest's stored photos as `data:` URLs (the model cannot reach our storage). Raises
    `TemporaryFailure` while one is still being downloaded; refused or failed ones are left
    out."""
    if any(m.state is MediaState.PENDING for m in context.media):
        raise TemporaryFailure("the guest's photo is still being downloaded", defer_seconds=3.0)
    urls = []
    for item in context.media:
        if item.state is MediaState.STORED:
            _item, data = await media.access_media(deps, hotel_id, item.id)
            urls.append(f"data:{item.content_type};base64,{base64.b64encode(data).decode()}")
    return tuple(urls)


def _for_staff(
    language: str, reason: str, kind: str, *, sources: tuple[Passage, ...] = (), **extra: Any
) -> DraftReply:
    """A holding message for the guest, and the conversation handed to staff."""
    return DraftReply(
        body=holding_message(language),
        author=Author.SYSTEM,
        responder=Responder.HOLDING,
        language=language,
        handoff_reason=reason,
        handoff_kind=kind,
        sources=sources,
        **extra,
    )


def answer_cache_key(context: ReplyContext, model: str) -> str | None:
    """The response-cache key of this question, or None when a cached answer would not be safe:
    the conversation has history (the question may lean on it), or the question is too long to
    be a repeated one. The key names everything the answer depends on: the hotel's knowledge
    version and profile, the question's language, the model, the prompt's version and the
    normalised question (case, accents' composition, punctuation and spacing ignored)."""
    if context.history:
        return None
    normal = " ".join(
        _PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", context.question).casefold()).split()
    )
    if not normal or len(normal) > MAX_CACHED_QUESTION_CHARS:
        return None
    hotel = context.hotel
    parts = [PROMPT_VERSION, str(hotel.knowledge_version), hotel.name, hotel.description,
             context.question_language or "-", model, normal]  # fmt: skip
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class _Withheld(Exception):
    """The reply check refused the reply (raised while streaming, or after)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.rule)
        self.verdict = verdict


@dataclass
class _Usage:
    """Tokens and cost over the model calls behind one reply."""

    prices: PriceTable
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None

    def add(self, completion: Completion) -> None:
        if completion.prompt_tokens is None or completion.completion_tokens is None:
            log.warning("reply.no_usage_figures", model=completion.model)
            return
        self.prompt_tokens = (self.prompt_tokens or 0) + completion.prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion.completion_tokens
        cost = self.prices.cost_usd(
            completion.model, completion.prompt_tokens, completion.completion_tokens
        )
        self.cost_usd = round((self.cost_usd or 0.0) + cost, 6)

    def figures(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


class _Conversation:
    """One reply written with the model: up to `MAX_TOOL_ROUNDS` rounds of tool calls, then the
    answer, checked, streamed as it passes the check."""

    def __init__(
        self,
        deps: Deps,
        hotel_id: int,
        context: ReplyContext,
        message_id: int,
        model: str,
        language: str,
    ) -> None:
        self.deps = deps
        self.hotel_id = hotel_id
        self.context = context
        self.message_id = message_id
        self.model = model
        self.language = language
        self.usage = _Usage(deps.prices)
        self.uses: list[ToolUse] = []
        self.tool_results: list[str] = []
        self.prompt: Prompt | None = None

    def check(self, text: str) -> Verdict:
        assert self.prompt is not None
        seen = "\n".join(
            [
                self.context.question,
                *(t.body for t in self.context.history if t.author is Author.GUEST),
            ]
        )
        return check_reply(
            text,
            instructions=self.prompt.instructions,
            facts="\n".join([self.prompt.facts, *self.tool_results]),
            seen=seen,
        )

    async def answer(
        self, passages: Sequence[Passage], cache_key: str | None, images: tuple[str, ...] = ()
    ) -> DraftReply:
        context, deps = self.context, self.deps
        self.prompt = build_prompt(
            context.hotel, passages, context.history, context.question,
            context.question_language, count=deps.token_counter.count, tools=True,
        )  # fmt: skip
        sources = self.prompt.passages
        messages = list(self.prompt.messages)
        if images:
            messages[-1] = replace(messages[-1], images=images)
        stream = _Stream(deps, context, self.message_id, self.check)
        handoff: str | None = None
        try:
            for round_number in range(MAX_TOOL_ROUNDS + 1):
                last = round_number == MAX_TOOL_ROUNDS
                completion = await self._call(messages, stream, "none" if last else "auto")
                if not completion.tool_calls or last:
                    break
                messages.append(
                    PromptMessage("assistant", completion.text, tool_calls=completion.tool_calls)
                )
                for call in completion.tool_calls:
                    result = await assistant_tools.run_tool(
                        deps, self.hotel_id, context.conversation_id, self.message_id, call
                    )
                    messages.append(PromptMessage("tool", result.content, tool_call_id=call.id))
                    self.uses.append(result.use)
                    self.tool_results.append(result.content)
                    handoff = handoff or result.handoff_reason
                if handoff is not None:
                    break
                stream.next_round()
        except ModelError as exc:
            await stream.abort()
            metrics.AI_ERRORS.labels(context.hotel.slug, self.model, exc.kind).inc()
            log.warning(
                "reply.model_failed",
                hotel_id=self.hotel_id,
                conversation_id=context.conversation_id,
                error_class=exc.kind,
                model=self.model,
            )
            return _for_staff(
                self.language,
                f"the assistant is unavailable ({exc.kind})",
                "model_error",
                sources=sources,
                tool_calls=tuple(self.uses),
                model=self.model,
                **self.usage.figures(),
            )
        except _Withheld as exc:
            await stream.abort()
            return self._withheld(exc.verdict, sources)
        except ReplyStopped:
            raise  # `reply_to_inbound` withdraws the text, once, whoever stopped it
        except BaseException:
            await stream.abort()
            raise
        figures = {**self.usage.figures(), "model": completion.model, "sources": sources,
                   "tool_calls": tuple(self.uses)}  # fmt: skip
        if handoff is not None:
            await stream.abort()
            return DraftReply(
                body=transfer_message(self.language),
                author=Author.AI,
                responder=Responder.OPENAI,
                language=self.language,
                handoff_reason=f"the guest needs staff: {handoff}",
                handoff_kind="guest_request",
                **figures,
            )
        text = cap_reply(completion.text)
        if not text:
            await stream.abort()
            metrics.AI_ERRORS.labels(context.hotel.slug, self.model, "bad_response").inc()
            return _for_staff(
                self.language,
                "the assistant is unavailable (bad_response)",
                "model_error",
                **figures,
            )
        verdict = self.check(text)
        if not verdict.ok:
            await stream.abort()
            return self._withheld(verdict, sources)
        try:
            await stream.finish(text)
        except _Withheld as exc:  # pragma: no cover - the whole text passed the same check
            await stream.abort()
            return self._withheld(exc.verdict, sources)
        if cache_key is not None and deps.answer_cache is not None and not self.uses:
            await deps.answer_cache.put(
                self.hotel_id,
                cache_key,
                CachedAnswer(text, context.question_language, completion.model, sources),
            )
        return DraftReply(
            body=text,
            author=Author.AI,
            responder=Responder.OPENAI,
            language=context.question_language,
            **figures,
        )

    async def _call(
        self,
        messages: Sequence[PromptMessage],
        stream: _Stream,
        tool_choice: Literal["auto", "none"],
    ) -> Completion:
        """One model call inside a shared concurrency slot, its outcome told to the breaker."""
        deps = self.deps
        assert deps.chat_model is not None
        slot = (
            deps.model_slots.slot(wait_seconds=deps.model_slot_wait_seconds)
            if deps.model_slots is not None
            else contextlib.nullcontext()
        )
        async with slot:
            try:
                completion = await deps.chat_model.complete(
                    model=self.model,
                    messages=messages,
                    max_tokens=deps.max_reply_tokens,
                    on_delta=stream.add,
                    tools=assistant_tools.TOOLS,
                    tool_choice=tool_choice,
                )
            except ModelError as exc:
                if deps.breaker is not None:
                    if exc.kind in OUTAGE_KINDS:
                        await deps.breaker.record_failure()
                    else:  # the provider answered: it is up
                        await deps.breaker.record_success()
                raise
            except (ReplyStopped, _Withheld):
                # The provider was streaming when we stopped listening: it is up.
                if deps.breaker is not None:
                    await deps.breaker.record_success()
                raise
        if deps.breaker is not None:
            await deps.breaker.record_success()
        self.usage.add(completion)
        _observe(self.context.hotel.slug, completion.model, completion)
        return completion

    def _withheld(self, verdict: Verdict, sources: tuple[Passage, ...]) -> DraftReply:
        rule = verdict.rule or "unknown"
        metrics.AI_REPLIES_WITHHELD.labels(self.context.hotel.slug, rule).inc()
        log.warning(
            "reply.withheld",
            hotel_id=self.hotel_id,
            conversation_id=self.context.conversation_id,
            rule=rule,
        )
        return _for_staff(
            self.language,
            f"the assistant's reply was withheld by the safety check ({rule})",
            "guard",
            sources=sources,
            tool_calls=tuple(self.uses),
            model=self.model,
            **self.usage.figures(),
        )


def cap_reply(text: str, limit: int = MAX_REPLY_CHARS) -> str:
    """`text` stripped and, past `limit` characters, cut at the last sentence end (or word)
    before it, with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] > limit // 2:
        return head[: ends[-1]].rstrip()
    return head.rsplit(maxsplit=1)[0].rstrip() + "…"


def _observe(slug: str, model: str, completion: Completion) -> None:
    if completion.time_to_first_token is not None:
        metrics.AI_TIME_TO_FIRST_TOKEN.labels(slug, model).observe(completion.time_to_first_token)
    if completion.duration is not None:
        metrics.AI_DURATION.labels(slug, model).observe(completion.duration)
    if completion.prompt_tokens is not None:
        metrics.AI_TOKENS.labels(slug, model, "prompt").inc(completion.prompt_tokens)
    if completion.completion_tokens is not None:
        metrics.AI_TOKENS.labels(slug, model, "completion").inc(completion.completion_tokens)


class _Stream:
    """Sends the model's text to screens as it arrives, in whole sentences that pass the reply
    check (so a web-chat guest never sees a sentence the check would refuse), at most every
    `STREAM_FLUSH_SECONDS`; checks the stop signal as often."""

    def __init__(
        self,
        deps: Deps,
        context: ReplyContext,
        reply_to: int,
        check: Callable[[str], Verdict],
    ) -> None:
        self._deps = deps
        self._context = context
        self._reply_to = reply_to
        self._check = check
        self._text = ""  # this round's text so far
        self._shown = 0  # how much of it screens have
        self._last = time.monotonic()
        self._seq = 0
        self.started = False

    async def add(self, piece: str) -> None:
        self._text += piece
        if time.monotonic() - self._last >= STREAM_FLUSH_SECONDS:
            self._last = time.monotonic()
            if await self._deps.stop_signals.stopped(self._context.conversation_id):
                raise ReplyStopped
            ends = [m.end() for m in _SENTENCE_END.finditer(self._text, self._shown)]
            if ends:
                await self._show(ends[-1])
            elif len(self._text) - self._shown > STREAM_MAX_HELD_CHARS:
                # A long sentence: show it up to its last whole word if that passes the check
                # (the sentence's end may still turn it into a refusal, so no verdict yet).
                cut = self._text.rfind(" ", self._shown)
                if cut > self._shown:
                    await self._show(cut, partial=True)

    def next_round(self) -> None:
        """The model called tools; what it writes next is a new text."""
        self._text, self._shown = "", 0

    async def finish(self, text: str) -> None:
        """Show the rest of the final, checked `text`."""
        self._text = text
        await self._show(len(text))

    async def abort(self) -> None:
        """Withdraw what screens were shown, if anything."""
        if self.started:
            await notify.ai_event(
                self._deps,
                "ai_aborted",
                self._context.conversation_id,
                self._reply_to,
                channel=self._context.channel,
            )
            self.started = False

    async def _show(self, end: int, *, partial: bool = False) -> None:
        """Show the text up to `end` if it passes the check. Whole sentences that fail it fail
        the reply (more text cannot mend them); a `partial` one just waits."""
        end = min(end, MAX_REPLY_CHARS)
        if end <= self._shown:
            return
        verdict = self._check(self._text[:end])
        if not verdict.ok:
            if partial:
                return
            raise _Withheld(verdict)
        text, self._shown = self._text[self._shown : end], end
        self.started = True
        await notify.ai_event(
            self._deps,
            "ai_delta",
            self._context.conversation_id,
            self._reply_to,
            channel=self._context.channel,
            text=text,
            seq=self._seq,
        )
        self._seq += 1


def answer_from_knowledge(retrieval: knowledge.Retrieval, language: str) -> DraftReply:
    """The best passage if it clearly answers, else a handoff message in `language`."""
    if retrieval.confident:
        best = retrieval.passages[0]
        return DraftReply(
            body=best.body,
            author=Author.AI,
            responder=Responder.KNOWLEDGE_BASE,
            language=None,
            sources=(best,),
        )
    return DraftReply(
        body=handoff_message(language),
        author=Author.AI,
        responder=Responder.KNOWLEDGE_BASE,
        language=language,
        handoff_reason="no knowledge-base entry answers the question",
        handoff_kind="no_answer",
        sources=tuple(retrieval.passages),
    )
