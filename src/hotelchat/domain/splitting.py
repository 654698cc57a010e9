"""Long outbound messages split into parts that Twilio accepts: at paragraph breaks first, then
at line breaks, then at sentence ends, then between words, and only as a last resort inside a
word; pure, no I/O.

Twilio refuses a body over 1,600 characters (error 21617;
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource), so a
longer reply goes out as ordered parts (`services.outbound`). Sentence ends come from pysbd's
rule-based segmenter (https://github.com/nipunsadvilkar/pySBD), which knows abbreviations such as
"Mr." and "a.m." in each of its languages; a language it lacks (Portuguese, for one) is segmented
with its English rules. The parts are slices of the text itself: joined with the whitespace
between them they give back the original, character for character.
"""

from __future__ import annotations

import functools
import re

import pysbd

from hotelchat.domain.model import MAX_OUTBOUND_CHARS

# A part shorter than this share of the limit is not cut at a weaker boundary class.
_MIN_FILL = 0.5
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n\s*")
_SPACE = re.compile(r"\s+")
_SBD_LANGUAGES = frozenset(pysbd.languages.LANGUAGE_CODES)


@functools.cache
def _segmenter(language: str) -> pysbd.Segmenter:
    code = language if language in _SBD_LANGUAGES else "en"
    return pysbd.Segmenter(language=code, clean=False, char_span=False)


def _sentence_ends(text: str, language: str) -> list[int]:
    """Offsets in `text` just after each sentence pysbd finds (segments that cannot be found
    again in the text, which pysbd's cleaning could cause, give no boundary)."""
    ends: list[int] = []
    position = 0
    for segment in _segmenter(language).segment(text):
        core = segment.strip()
        if not core:
            continue
        found = text.find(core, position)
        if found < 0:
            continue
        position = found + len(core)
        ends.append(position)
    return ends


def split_message(text: str, *, limit: int = MAX_OUTBOUND_CHARS, language: str = "en") -> list[str]:
    """`text` (stripped) as ordered parts of at most `limit` characters each.

    A text within the limit is one part. Otherwise each part ends at the last paragraph break
    that leaves it at least half full, else the last line break, else the last sentence end
    (in `language`, an ISO 639-1 code), else the last whitespace, else exactly at `limit` (a
    word longer than the limit).
    Parts are stripped and never empty; joining them with whitespace gives back `text` up to
    the whitespace at the cuts. Raises `ValueError` for a `limit` under 1 character.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1 character")
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    sentence_ends = _sentence_ends(text, language)
    parts: list[str] = []
    start = 0
    while start < len(text):
        if len(text) - start <= limit:
            parts.append(text[start:].strip())
            break
        cut = _cut(text, start, limit, sentence_ends)
        part = text[start:cut].strip()
        if part:
            parts.append(part)
        start = cut
        while start < len(text) and text[start].isspace():
            start += 1
    return parts


def _cut(text: str, start: int, limit: int, sentence_ends: list[int]) -> int:
    """Where the part that begins at `start` ends (an offset in `text`, > `start`)."""
    end = start + limit
    window = text[start:end]
    floor = start + int(limit * _MIN_FILL)
    for pattern in (_PARAGRAPH, _LINE):
        breaks = [start + m.start() for m in pattern.finditer(window)]
        best = [b for b in breaks if b >= floor]
        if best:
            return best[-1]
    sentence = [e for e in sentence_ends if floor <= e <= end]
    if sentence:
        return sentence[-1]
    spaces = [start + m.start() for m in _SPACE.finditer(window)]
    space = [s for s in spaces if s > start]
    if space:
        return space[-1]
    return end
