"""Answer one inbound guest message: re-read it, skip it if it is not the assistant's turn, ask
the model (or the knowledge base), store the one reply, and send it.

Idempotent by construction. PostgreSQL holds the guard: a lease on the inbound message while the
answer is being produced, and a unique index that admits one automated reply per inbound message.
Run twice, or re-run after the worker died at any point, and the guest still gets exactly one
reply: a second run finds the stored reply and only finishes sending it (see `services.outbound`).

The model's answer streams, a few chunks a second, to agents watching the conversation and to a
web-chat guest; WhatsApp gets only the finished reply. An agent taking the conversation over stops
the stream at once. A stream that fails midway is withdrawn from screens (`ai_aborted`), and the
guest gets the holding message instead: nothing partial is ever sent.
"""

from __future__ import annotations

import contextlib
import time

import structlog

from hotelchat.domain.errors import ModelError, TemporaryFailure, Unavailable
from hotelchat.domain.language import handoff_message, holding_message, pick_language
from hotelchat.domain.model import Author, Responder
from hotelchat.observability import metrics
from hotelchat.services import knowledge, notify, outbound
from hotelchat.services.ports import (
    Busy,
    Completion,
    Deps,
    DraftReply,
    Gone,
    ReplyAlreadyStored,
    ReplyClaimed,
    ReplyContext,
    ReplySkipped,
    ReplyStored,
)
from hotelchat.services.prompts import build_prompt

log = structlog.get_logger(__name__)

# Stream chunks are sent to screens at most this often (seconds); the stop signal is checked as
# often.
STREAM_FLUSH_SECONDS = 0.1


class ReplyStopped(Exception):
    """An agent took the conversation over while the assistant was answering."""


async def reply_to_inbound(deps: Deps, hotel_id: int, message_id: int) -> str:
    """Produce, store and send the automated reply to inbound message `message_id`.

    Returns what happened (`sent`, `skipped: …`, `stopped: …`, `gone`, …) for logs and tests.
    Raises `TemporaryFailure` when the work should be retried later (another job holds the
    lease, the provider failed in a way that may pass) and `Unavailable` when PostgreSQL is down.
    """
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
    await notify.ai_event(
        deps, "ai_done", context.conversation_id, message_id, channel=context.channel
    )
    await notify.message_added(
        deps, hotel_id, context.conversation_id, reply_id, guest_channel=None
    )
    if draft.handoff_kind is not None:
        await _handed_off(deps, hotel_id, context.hotel.slug, draft.handoff_kind)
    return await outbound.send_outbound(deps, hotel_id, reply_id)


async def _handed_off(deps: Deps, hotel_id: int, slug: str | None, kind: str) -> None:
    metrics.HANDOFFS.labels(slug or str(hotel_id), kind).inc()


async def draft_reply(
    deps: Deps, hotel_id: int, context: ReplyContext, message_id: int = 0
) -> DraftReply:
    """The reply to `context.question`: from the chat model when one is configured, else the
    best knowledge-base passage; a holding message and a handoff when the model fails.
    Raises `ReplyStopped` when an agent takes the conversation over while the model answers."""
    language = pick_language(
        context.question_language, context.guest_language, context.hotel.default_language
    )
    if not context.question.strip():
        # Media or a location with no text: the assistant cannot see it; staff can.
        return DraftReply(
            body=handoff_message(language),
            author=Author.AI,
            responder=Responder.KNOWLEDGE_BASE if deps.chat_model is None else Responder.OPENAI,
            language=language,
            handoff_reason="the guest sent media",
            handoff_kind="media",
        )
    retrieval = await knowledge.retrieve(
        deps, hotel_id, context.question, limit=deps.passages_per_prompt
    )
    passages = retrieval.passages
    if deps.chat_model is None:
        return answer_from_knowledge(retrieval, language)
    model = context.hotel.ai_model or deps.default_model
    prompt = build_prompt(
        context.hotel, passages, context.history, context.question, context.question_language
    )
    stream = _Stream(deps, context, message_id)
    try:
        completion = await deps.chat_model.complete(
            model=model, messages=prompt, max_tokens=deps.max_reply_tokens, on_delta=stream.add
        )
    except ModelError as exc:
        if stream.started:
            await notify.ai_event(
                deps, "ai_aborted", context.conversation_id, message_id, channel=context.channel
            )
        metrics.AI_ERRORS.labels(context.hotel.slug, model, exc.kind).inc()
        log.warning(
            "reply.model_failed",
            hotel_id=hotel_id,
            conversation_id=context.conversation_id,
            error_class=exc.kind,
            model=model,
        )
        return DraftReply(
            body=holding_message(language),
            author=Author.SYSTEM,
            responder=Responder.HOLDING,
            language=language,
            handoff_reason=f"the assistant is unavailable ({exc.kind})",
            handoff_kind="model_error",
            sources=tuple(passages),
        )
    await stream.flush()
    _observe(context.hotel.slug, completion.model, completion)
    return DraftReply(
        body=completion.text,
        author=Author.AI,
        responder=Responder.OPENAI,
        language=context.question_language,
        sources=tuple(passages),
        model=completion.model,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
    )


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
    """Batches streamed chunks into `ai_delta` events and checks the stop signal between them."""

    def __init__(self, deps: Deps, context: ReplyContext, reply_to: int) -> None:
        self._deps = deps
        self._context = context
        self._reply_to = reply_to
        self._buffer: list[str] = []
        self._last = time.monotonic()
        self._seq = 0
        self.started = False

    async def add(self, piece: str) -> None:
        self._buffer.append(piece)
        if time.monotonic() - self._last >= STREAM_FLUSH_SECONDS:
            if await self._deps.stop_signals.stopped(self._context.conversation_id):
                raise ReplyStopped
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        text, self._buffer = "".join(self._buffer), []
        self._last = time.monotonic()
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
