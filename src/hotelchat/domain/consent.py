"""Opt-out and opt-in keywords: a guest who sends STOP (or BAJA, ARRÊT, ABMELDEN…) is opted out
of the hotel's proactive messages, START (or ALTA, ANMELDEN…) opts them back in; pure, no I/O.

A keyword counts only as the whole message: "STOP" or "stop!" does, "please stop the music in
room 12" does not. Case, accents, surrounding punctuation and spacing are ignored, so ARRET and
ARRÊT, OPT-OUT and opt out are the same keyword. English's CANCEL, END and QUIT (in carriers'
SMS lists) are left out on purpose: a hotel guest who writes "cancel" means a booking.

Opt-out applies to proactive messages only (templates, journeys): replies to a guest's own
messages inside WhatsApp's 24-hour window stay allowed. Twilio's built-in STOP filtering and its
Advanced Opt-Out (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out, and
https://help.twilio.com/articles/223134027) are documented for SMS long codes and Messaging
Services, not for WhatsApp senders, so HotelChat keeps the state itself, per hotel; for
WhatsApp's own rule that businesses must honour opt-out requests see
https://www.twilio.com/docs/whatsapp/best-practices-and-faqs.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The languages with a default keyword set (ISO 639-1).
DEFAULT_OPT_OUT: dict[str, tuple[str, ...]] = {
    "en": ("STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT", "OPT OUT", "REVOKE"),
    "es": ("BAJA", "PARAR", "DETENER", "DAR DE BAJA", "CANCELAR SUSCRIPCION"),
    "pt": ("PARAR", "SAIR", "DESCADASTRAR", "CANCELAR INSCRICAO"),
    "fr": ("ARRET", "DESABONNER", "DESINSCRIRE", "DESINSCRIPTION"),
    "de": ("ABMELDEN", "STOPP", "ABBESTELLEN"),
    "it": ("DISISCRIVI", "DISISCRIVIMI", "CANCELLAMI", "BASTA"),
    "nl": ("AFMELDEN", "STOPPEN", "UITSCHRIJVEN"),
}
DEFAULT_OPT_IN: dict[str, tuple[str, ...]] = {
    "en": ("START", "UNSTOP", "SUBSCRIBE"),
    "es": ("ALTA", "REANUDAR", "SUSCRIBIR"),
    "pt": ("INICIAR", "VOLTAR", "CADASTRAR"),
    "fr": ("DEMARRER", "REPRENDRE", "ABONNER"),
    "de": ("ANMELDEN", "STARTEN"),
    "it": ("ISCRIVIMI", "RIPRENDI"),
    "nl": ("AANMELDEN", "STARTEN"),
}

# The one confirmation a guest gets for each change.
OPTED_OUT_CONFIRMATION: dict[str, str] = {
    "en": "You will no longer receive messages from us that you did not ask for. "
    "Reply START to receive them again. You can still write to us at any time.",
    "es": "Ya no recibirá mensajes nuestros que no haya solicitado. Responda ALTA para "
    "volver a recibirlos. Puede seguir escribiéndonos cuando quiera.",
    "pt": "Não receberá mais mensagens nossas que não tenha pedido. Responda INICIAR para "
    "voltar a recebê-las. Pode continuar a escrever-nos quando quiser.",
    "fr": "Vous ne recevrez plus de messages de notre part que vous n'avez pas demandés. "
    "Répondez DEMARRER pour les recevoir à nouveau. Vous pouvez toujours nous écrire.",
    "de": "Sie erhalten keine unaufgeforderten Nachrichten mehr von uns. Antworten Sie "
    "ANMELDEN, um sie wieder zu erhalten. Sie können uns jederzeit schreiben.",
    "it": "Non riceverà più messaggi da noi che non ha richiesto. Risponda ISCRIVIMI per "
    "riceverli di nuovo. Può sempre scriverci quando vuole.",
    "nl": "U ontvangt geen ongevraagde berichten meer van ons. Antwoord AANMELDEN om ze weer "
    "te ontvangen. U kunt ons altijd schrijven.",
}
OPTED_IN_CONFIRMATION: dict[str, str] = {
    "en": "Thank you: you will receive our messages again. Reply STOP at any time to stop them.",
    "es": "Gracias: volverá a recibir nuestros mensajes. Responda BAJA en cualquier momento "
    "para dejar de recibirlos.",
    "pt": "Obrigado: voltará a receber as nossas mensagens. Responda PARAR a qualquer momento "
    "para deixar de as receber.",
    "fr": "Merci : vous recevrez à nouveau nos messages. Répondez ARRET à tout moment pour ne "
    "plus les recevoir.",
    "de": "Danke: Sie erhalten wieder Nachrichten von uns. Antworten Sie jederzeit ABMELDEN, "
    "um sie abzubestellen.",
    "it": "Grazie: riceverà di nuovo i nostri messaggi. Risponda DISISCRIVI in qualsiasi "
    "momento per non riceverli più.",
    "nl": "Dank u: u ontvangt onze berichten weer. Antwoord AFMELDEN om ze op elk moment te "
    "stoppen.",
}
MAX_KEYWORD_CHARS = 64
_EDGES = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_INNER = re.compile(r"[\s\-_.]+", re.UNICODE)


class ConsentAction(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """A message that is a keyword: what it does, the keyword as normalised, and the languages
    that list it (PARAR is Spanish and Portuguese)."""

    action: ConsentAction
    keyword: str
    languages: tuple[str, ...]

    def language(self, preferred: Iterable[str | None]) -> str:
        """The first of `preferred` that lists the keyword, else the keyword's first language."""
        for code in preferred:
            if code in self.languages:
                return code
        return self.languages[0]


def normalise_keyword(text: str) -> str:
    """`text` as keywords are compared: accents dropped, upper case, punctuation at the ends
    dropped, inner spaces, hyphens, dots and underscores as one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _INNER.sub(" ", _EDGES.sub("", plain.upper())).strip()


class KeywordTable:
    """Which messages are opt-out or opt-in keywords, per language.

    `opt_out` / `opt_in` map a language code to its keywords and replace the defaults of the
    languages they name (others keep theirs). Raises `ValueError` for an empty or over-long
    keyword, or one that is both an opt-out and an opt-in keyword.
    """

    def __init__(
        self,
        opt_out: Mapping[str, Iterable[str]] | None = None,
        opt_in: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._table: dict[str, tuple[ConsentAction, list[str]]] = {}
        for action, defaults, custom in (
            (ConsentAction.OPT_OUT, DEFAULT_OPT_OUT, opt_out or {}),
            (ConsentAction.OPT_IN, DEFAULT_OPT_IN, opt_in or {}),
        ):
            merged = {**defaults, **{k: tuple(v) for k, v in custom.items()}}
            for language, words in merged.items():
                for word in words:
                    self._add(action, language, word)

    def _add(self, action: ConsentAction, language: str, word: str) -> None:
        key = normalise_keyword(word)
        if not key or len(key) > MAX_KEYWORD_CHARS:
            raise ValueError(f"keyword {word!r} must have 1 to {MAX_KEYWORD_CHARS} characters")
        known = self._table.get(key)
        if known is None:
            self._table[key] = (action, [language])
            return
        if known[0] is not action:
            raise ValueError(f"keyword {word!r} cannot both opt out and opt in")
        if language not in known[1]:
            known[1].append(language)

    def match(self, body: str) -> KeywordMatch | None:
        """The keyword `body` is, or None (most messages)."""
        if len(body) > MAX_KEYWORD_CHARS * 2:
            return None
        key = normalise_keyword(body)
        found = self._table.get(key)
        if found is None:
            return None
        return KeywordMatch(found[0], key, tuple(found[1]))

    def keywords(self, action: ConsentAction) -> list[str]:
        """Every keyword of `action`, normalised, sorted."""
        return sorted(k for k, (a, _) in self._table.items() if a is action)


DEFAULT_KEYWORDS = KeywordTable()


def confirmation(action: ConsentAction, language: str) -> str:
    """The confirmation of `action` in `language` (English when there is none in it)."""
    texts = OPTED_OUT_CONFIRMATION if action is ConsentAction.OPT_OUT else OPTED_IN_CONFIRMATION
    return texts.get(language, texts["en"])
