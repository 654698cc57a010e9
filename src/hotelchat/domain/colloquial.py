"""Colloquial and transliterated words guests use for hotel things, with the plain English word
the small embeddings model knows (issue 10: `petit dej`, `fruehstueck`, `brekkie`, `canguro`).

`expand` appends the plain words to a question, so the multilingual embeddings see both; the
question itself is kept. Matching is on whole words of the question with accents and case
folded. The list is hotel vocabulary in the languages guests write in, not any hotel's entries;
docs/retrieval.md says what it gained on the tuning sets and the holdouts.
"""

from __future__ import annotations

import re
import unicodedata

# (colloquial form, plain English). Forms are accent-free, lowercase; several words allowed.
TERMS: tuple[tuple[str, str], ...] = (
    # breakfast
    ("brekkie", "breakfast"),
    ("brekky", "breakfast"),
    ("breakfst", "breakfast"),
    ("petit dej", "breakfast"),
    ("petit-dej", "breakfast"),
    ("ptit dej", "breakfast"),
    ("fruehstueck", "breakfast"),
    ("fruhstuck", "breakfast"),
    ("zmorge", "breakfast"),
    ("pequeno almoco", "breakfast"),
    ("cafe da manha", "breakfast"),
    ("colazione", "breakfast"),
    ("ontbijt", "breakfast"),
    ("desayuno", "breakfast"),
    # internet
    ("wlan", "wifi internet"),
    ("wifi pw", "wifi password"),
    ("pw", "password"),
    ("pwd", "password"),
    ("mdp", "password"),
    ("contrasena", "password"),
    ("senha", "password"),
    # rooms, safes, luggage
    ("tresor", "safe"),
    ("cofre", "safe"),
    ("caja fuerte", "safe"),
    ("coffre", "safe"),
    ("kluis", "safe"),
    ("malas", "luggage"),
    ("valises", "luggage"),
    ("koffer", "luggage"),
    ("bagagli", "luggage"),
    ("maletas", "luggage"),
    # people and services
    ("canguro", "babysitter"),
    ("oppas", "babysitter"),
    ("nounou", "babysitter"),
    ("pressing", "dry cleaning laundry"),
    ("tintoreria", "dry cleaning laundry"),
    ("lavanderia", "laundry"),
    ("waschkueche", "laundry"),
    # fitness and wellness
    ("academia", "gym"),
    ("ginasio", "gym"),
    ("gimnasio", "gym"),
    ("gym", "gym fitness"),
    ("muscu", "gym"),
    ("palestra", "gym"),
    ("sportschool", "gym"),
    ("circuito de aguas", "spa"),
    ("sauana", "sauna"),
    # getting around
    ("parkplaz", "parking"),
    ("parkplatz", "parking"),
    ("parkeerplaats", "parking"),
    ("estacionamento", "parking"),
    ("aparcamiento", "parking"),
    ("finde", "weekend"),
    ("rando", "hike"),
    ("randonnee", "hike"),
    ("trineo", "sledge"),
    ("rodeln", "sledge"),
    ("luge", "sledge"),
    # money
    ("fianza", "deposit"),
    ("kaution", "deposit"),
    ("kurtaxe", "tourist tax"),
    ("taxe de sejour", "tourist tax"),
    ("tasa turistica", "tourist tax"),
    ("tassa di soggiorno", "tourist tax"),
    # times of the stay
    ("check-out", "check-out leave the room"),
    ("checkout", "check-out leave the room"),
    ("einchecken", "check-in"),
    ("auschecken", "check-out"),
    ("enregistrement", "check-in"),
)

_INDEX = {form: plain for form, plain in TERMS}
_LONGEST = max(len(form.split()) for form, _ in TERMS)
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def fold(text: str) -> str:
    """`text` lowercased without accents (é -> e, ç -> c, ü -> u)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def expand(question: str) -> str:
    """`question` with the plain words of the colloquial forms it contains appended in
    parentheses, or `question` unchanged when it contains none."""
    words = _WORD.findall(fold(question))
    found: list[str] = []
    used: set[int] = set()  # words already part of a longer form
    for size in range(_LONGEST, 0, -1):
        for start in range(len(words) - size + 1):
            span = set(range(start, start + size))
            plain = None if span & used else _INDEX.get(" ".join(words[start : start + size]))
            if plain is not None:
                used |= span
                if plain not in found:
                    found.append(plain)
    return f"{question} ({', '.join(found)})" if found else question
