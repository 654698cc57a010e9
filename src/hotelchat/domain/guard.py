"""The check every model reply passes before a guest sees it.

The model is told to answer only from the hotel's facts and never to promise anything else, but a
guest (or a poisoned knowledge-base entry) can talk it out of that. So the reply is checked
against what the model was given, and withheld when it:

- repeats the assistant's instructions (`prompt_leak`): any run of `LEAK_WORDS` consecutive words
  of the instruction part of the system prompt (the hotel's facts may be quoted freely);
- offers money the facts do not (`unstated_offer`): a discount, refund, upgrade, compensation or
  free stay in the languages below, or a percentage, in a sentence that is not a refusal, where
  the facts never mention such a thing; guest messages do not count as facts, so "give me a 100 %
  discount" cannot make a "100 % discount" reply acceptable;
- names a booking reference, link, e-mail address or phone number that appears nowhere in what
  the model read (`unknown_code`, `unknown_link`, `unknown_email`, `unknown_phone`): the facts, the
  tool results of this reply (the guest's own reservation) and the guest's own words. The model
  cannot leak another guest's reservation it never saw; this stops it inventing one, or passing on
  a phishing link planted in a message.

Refusal detection is a heuristic (negation words of English, Spanish, French, German, Italian and
Portuguese in the same sentence); a withheld reply is never lost: the guest gets the handoff
message and staff see the conversation, so a false alarm costs a human answer, not a wrong one.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LEAK_WORDS = 8

_WORDS = re.compile(r"\w+", re.UNICODE)
_SENTENCES = re.compile(r"(?<=[.!?¡¿\n])\s+")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.IGNORECASE)
_HOST = re.compile(r"^(?:https?://)?([^/:?#\s]+)", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Seven or more digits, possibly split by spaces, dots, dashes or brackets, optionally with "+".
_PHONE = re.compile(r"\+?\(?\d(?:[\s().-]{0,2}\d){6,}")
# A booking-reference-looking token: 5+ characters of capitals, digits and dashes, with both a
# letter and a digit ("ABC-12345", "QX7Y2Z").
_CODE = re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{3,}[A-Z0-9]\b")
_PERCENT = re.compile(r"(\d+(?:[.,]\d+)?)\s?%")
_OFFERS = re.compile(
    r"discount|refund|reimburs|upgrade|compensat|free of charge|free night|complimentary|"
    r"voucher|waive|descuento|reembols|gratis|gratuit|remise|réduction|rembours|surclass|"
    r"dédommag|rabatt|erstatt|kostenlos|gutschein|sconto|rimbors|omaggio|desconto|"
    r"reembolso|cortesia",
    re.IGNORECASE,
)
# A sentence that declines ("I'm sorry, we cannot offer discounts") rather than offers.
_REFUSAL = re.compile(
    r"\b(?:can't|cannot|can not|couldn't|unable|not able|won't|will not|not possible|"
    r"don't|do not|doesn't|does not|isn't|is not|aren't|are not|not allowed|not available|"
    r"not authori[sz]ed|sorry|unfortunately|"
    r"no puedo|no podemos|no es posible|no ofrecemos|no tenemos|lo siento|lamentablemente|"
    r"ne (?:peux|pouvons|pouvez) pas|pas possible|n'offrons pas|désolée?|malheureusement|"
    r"leider|nicht möglich|kann (?:ich )?(?:keine|nicht)|können (?:wir )?(?:keine|nicht)|"
    r"non posso|non possiamo|non è possibile|purtroppo|mi dispiace|"
    r"não posso|não podemos|não é possível|infelizmente|desculpe)\b",
    re.IGNORECASE,
)
# Dates look like phone numbers to `_PHONE` ("2026-11-22", "22.11.2026"): not numbers to check.
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """`rule` is None when the reply may be sent, else the rule it broke and the offending text
    (for staff and logs, never for the guest)."""

    rule: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.rule is None


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> list[str]:
    return _WORDS.findall(_normal(text))


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _host(url: str) -> str:
    match = _HOST.match(url)
    return (match.group(1) if match else url).casefold().removeprefix("www.")


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def check_reply(reply: str, *, instructions: str, facts: str, seen: str) -> Verdict:
    """Whether `reply` may go to the guest.

    `instructions`: the part of the system prompt that is not hotel facts. `facts`: the hotel's
    description, the knowledge-base passages and the tool results the model was given. `seen`:
    everything else the model read that the reply may repeat (the guest's messages).
    """
    leak = _shingles(_words(instructions), LEAK_WORDS) & _shingles(_words(reply), LEAK_WORDS)
    if leak:
        return Verdict("prompt_leak", " ".join(sorted(leak)[0]))
    facts_normal = _normal(facts)
    for sentence in _SENTENCES.split(reply):
        offer = _OFFERS.search(sentence)
        if (
            offer
            and offer.group(0).casefold() not in facts_normal
            and not _REFUSAL.search(sentence)
        ):
            return Verdict("unstated_offer", sentence.strip()[:200])
        for percent in _PERCENT.findall(sentence):
            if not re.search(rf"(?<![\d.,]){re.escape(percent)}\s?%", facts) and not (
                _REFUSAL.search(sentence)
            ):
                return Verdict("unstated_offer", sentence.strip()[:200])
    known = facts + "\n" + seen
    known_normal = _normal(known)
    for code in _CODE.findall(reply):
        if code.casefold() not in known_normal:
            return Verdict("unknown_code", code)
    known_hosts = {_host(url) for url in _URL.findall(known)}
    known_hosts |= {e.split("@", 1)[1].casefold() for e in _EMAIL.findall(known)}
    for url in _URL.findall(reply):
        if _host(url) not in known_hosts:
            return Verdict("unknown_link", url[:200])
    for email in _EMAIL.findall(reply):
        if email.casefold() not in known_normal:
            return Verdict("unknown_email", email)
    known_digits = {_digits(m) for m in _PHONE.findall(known)}
    for phone in _PHONE.findall(reply):
        if _DATE.fullmatch(phone.strip()):
            continue
        digits = _digits(phone)
        if not any(digits in k or (len(k) >= 7 and k in digits) for k in known_digits):
            return Verdict("unknown_phone", phone.strip())
    return Verdict()
