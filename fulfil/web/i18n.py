"""The console's texts in Chinese and English: message catalogues (locale/*.json, English text -> translation);
the language from the `lang` cookie (the switch), else Accept-Language, else English."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources

LANGUAGES = ("en", "zh")
COOKIE = "lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    text = resources.files("fulfil.web").joinpath("locale", f"{lang}.json").read_text(encoding="utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def choose(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and q > best_q:
            best, best_q = base, q
    return best


def translator(lang: str) -> Callable[[str], str]:
    texts: Mapping[str, str] = catalogue(lang) if lang != "en" else {}

    def gettext(message: str) -> str:
        return texts.get(message, message)

    return gettext
