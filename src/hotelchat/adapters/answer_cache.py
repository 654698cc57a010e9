"""The response cache in Redis: earlier answers to the same question, per hotel.

One Redis hash per hotel (`hotelchat:answers:<hotel_id>`), field = the caller's key (it names the
knowledge-base version, language, model and normalised question), value = the answer as JSON.
The hash expires `ttl_seconds` after its last write and holds at most `max_entries` answers: at
the limit, new answers are not kept until the hash expires (a cache, not a store; it never grows
without bound). A change to the knowledge base changes the version in every key, so old answers
are simply never read again and leave with the hash.

Best effort: every call is bounded by `timeout` seconds, and a Redis failure is a miss (logged).
"""

from __future__ import annotations

import asyncio
import json

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotelchat.domain.model import Passage
from hotelchat.services.ports import CachedAnswer

log = structlog.get_logger(__name__)

_ERRORS = (RedisError, OSError, TimeoutError)

# Writes the answer unless the hash is full, and (re)sets its expiry. KEYS[1] hash; ARGV field,
# value, max entries, ttl seconds.
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


class RedisAnswerCache:
    """`services.ports.AnswerCache` on a Redis hash per hotel."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, max_entries: int, timeout: float) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._max = max_entries
        self._timeout = timeout
        self._put = redis.register_script(_PUT)

    @staticmethod
    def _hash(hotel_id: int) -> str:
        return f"hotelchat:answers:{hotel_id}"

    async def get(self, hotel_id: int, key: str) -> CachedAnswer | None:
        """The answer stored under `key` for this hotel, or None (also when Redis fails)."""
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.hget(self._hash(hotel_id), key)  # type: ignore[misc]
        except _ERRORS as exc:
            log.warning("answer_cache.unavailable", operation="get", error_class=type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return CachedAnswer(
                body=str(data["body"]),
                language=data["language"],
                model=str(data["model"]),
                sources=tuple(Passage(**p) for p in data["sources"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("answer_cache.corrupt_entry", hotel_id=hotel_id)
            return None

    async def put(self, hotel_id: int, key: str, answer: CachedAnswer) -> None:
        """Keep `answer` under `key`, unless the hotel's cache is full."""
        value = json.dumps(
            {
                "body": answer.body,
                "language": answer.language,
                "model": answer.model,
                "sources": [
                    {"entry_id": p.entry_id, "title": p.title, "body": p.body, "score": p.score}
                    for p in answer.sources
                ],
            },
            ensure_ascii=False,
        )
        try:
            async with asyncio.timeout(self._timeout):
                await self._put(
                    keys=[self._hash(hotel_id)], args=[key, value, self._max, self._ttl]
                )
        except _ERRORS as exc:
            log.warning("answer_cache.unavailable", operation="put", error_class=type(exc).__name__)
