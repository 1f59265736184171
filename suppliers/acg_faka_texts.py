"""What an acg-faka shop's texts mean: failure messages, and whether a `secret` holds keys or the shop's words.

Pure functions, no I/O: the adapter (`suppliers.acg_faka`) calls them on what the wire gave it.

**Failures** are `{"code": 0, "msg": "<Chinese text>"}`, told apart only by their text (sent untranslated:
the adapter asks for `zh-CN` and keeps no cookie). `trade_failure` decides:

- "The request ID already exists": a purchase under this number was recorded, and charged, before; the answer
  says nothing of what became of it -> `OrderState.EXISTS`.
- "商品不存在" / "当前商品已停售": PRODUCT_UNAVAILABLE, `maybe_charged`: a shop reselling another shop's goods
  checks that upstream *after* our charge committed, and that check throws these texts too. The engine
  re-sends the same number to learn which (EXISTS: charged).
- Quantity caps ("该商品每人只能购买N件", "本商品单次最多购买N个", "本商品最少购买N个"): this offer cannot
  serve the order -> PRODUCT_UNAVAILABLE (fail over), not ORDER_REJECTED.
- Other known texts by `classify_message`; an unknown text is AMBIGUOUS (never fail lightly).

**Keys or text.** `code: 200` is not always keys: a manual-delivery item answers the shop's delivery message
("正在发货中，请耐心等待…" by default, or any text the shop set), and a buyer who lost the race for the last
key gets "很抱歉，有人在你付款之前抢走了商品，请联系客服。" — both charged. `read_secret` reads the secret as
the shop's text (no cards at all; the engine claims the charged units) when any of these holds:

1. it is missing, not a string, or blank;
2. it contains a known shop notice (`NOTICES`);
3. it gives fewer card lines than `num`: acg-faka hands out all `num` keys or none, so a short answer is a
   message or a broken delivery;
4. without `options.key_pattern`: a line holds a Han character or CJK punctuation (other than the full-width
   comma, a number/password separator), or reads like a sentence (three or more words, one ending in
   `.,!?;:`). Keys are ASCII; grouped keys ("ABCD EFGH IJKL") carry no sentence punctuation;
5. with `options.key_pattern` (a regex, per supplier): a line does not fully match it. This replaces rule 4,
   for a shop whose keys rule 4 would misread.

Otherwise every non-blank line is one card (see `parse_secret`); more lines than `num` are all returned and
the engine's validation judges the surplus. Message text never becomes a `Card`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from suppliers.taxonomy import Card, ErrorClass, Evidence, OrderState, Outcome

# --- failure messages ---------------------------------------------------------------------------------

# The upstream refuses a request_no it has recorded (unique index, checked inside the purchase transaction).
ALREADY_PLACED: Final = re.compile(r"request\s*(?:id|no)\s*already\s*exists", re.IGNORECASE)

# Texts the post-charge stock check at a reselling shop's own upstream throws (after our payment committed).
MAYBE_CHARGED: Final = ("商品不存在", "已停售")

# Checked in order, first match wins. Substrings of the upstream's own texts (OrderService::trade,
# SharedValidation, Bill::create in acg-faka v3); ASCII fragments are matched case-insensitively.
_MESSAGE_RULES: Final[tuple[tuple[ErrorClass, tuple[str, ...]], ...]] = (
    (ErrorClass.OUR_BUG, ("代码不能为空", "CODE不能为空")),  # we sent no product code
    (
        ErrorClass.SUPPLIER_ACCOUNT,
        (
            "密钥错误",  # bad signature / key
            "签名",
            "商户ID不存在",  # unknown app_id
            "app_id",
            "appid",
            "app_key",
            "sign",
            "余额不足",  # insufficient balance
            "balance",
            "banned",  # our account at the upstream is banned
            "用户不存在",
            "登录",  # the upstream treats us as logged out
            "支付方式",  # balance payment disabled or broken at the upstream
        ),
    ),
    (
        ErrorClass.PRODUCT_UNAVAILABLE,
        (
            "商品不存在",  # product missing
            "已停售",  # off sale
            "库存不足",  # out of stock
            "暂未上架",
            "商品种类",  # the configured race (variant) is not sold there (不存在 / 请选择商品种类)
            "抢购",  # flash sale not started / over
            "被他人抢走",
            "out of stock",
            # Caps this offer cannot serve the order under: fail over to another offer.
            "每人只能购买",  # per buyer (our account at that shop)
            "单次最多购买",  # per trade
            "最少购买",  # at least N per trade
        ),
    ),
    (
        ErrorClass.ORDER_REJECTED,
        (
            "联系方式",  # contact invalid
            "格式不正确",
            "至少购买",  # num <= 0
            "数量",
            "quantity",
        ),
    ),
)


def classify_message(message: str) -> ErrorClass:
    """The error class of an upstream failure message; unknown texts (and a repeated number) are AMBIGUOUS."""
    if ALREADY_PLACED.search(message):
        return ErrorClass.AMBIGUOUS
    folded = message.casefold()
    for error, fragments in _MESSAGE_RULES:
        if any(fragment.casefold() in folded for fragment in fragments):
            return error
    return ErrorClass.AMBIGUOUS


def trade_failure(message: str, evidence: Evidence) -> Outcome:
    """What a `code: 0` answer to `trade` means for money."""
    if ALREADY_PLACED.search(message):
        return Outcome(OrderState.EXISTS, evidence=evidence)
    error = classify_message(message)
    if error is ErrorClass.AMBIGUOUS:
        return Outcome.error_of(error, evidence)
    # A shop reselling another shop's goods checks that upstream after our payment committed; whatever that
    # check throws (missing, off sale, out of stock, its own account's trouble) reaches us as code 0 although we
    # were charged. Re-sending the number costs a request and tells: "already exists" means charged.
    maybe_charged = error in (ErrorClass.PRODUCT_UNAVAILABLE, ErrorClass.SUPPLIER_ACCOUNT)
    return Outcome(OrderState.FAILED, error=error, evidence=evidence, maybe_charged=maybe_charged)


# --- keys or the shop's text --------------------------------------------------------------------------

# acg-faka's own texts in `secret` when it charged but has no key to give.
NOTICES: Final = ("正在发货中", "请耐心等待", "联系客服", "有人在你付款之前抢走", "没有发货信息")
QUOTE_LIMIT: Final = 300  # characters of shop text quoted in evidence
_HIDDEN: Final = "<redacted>"

# Han ideographs, CJK symbols and punctuation, full-width forms (less the full-width comma, a separator).
_CJK: Final = re.compile(
    r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff0b\uff0d-\uff65]"
)
_SENTENCE_END: Final = re.compile(r"[.,!?;:]$")

# One card per line, split once into number and password at the first separator found in this order: "----"
# (the common 卡号----卡密 export), a tab, a comma (ASCII or full-width), "|". A line of exactly two
# space-separated words is "number password"; three or more words are one grouped key ("ABCD EFGH IJKL"),
# kept whole. A line without a separator, or with an empty side, is a password-only card. Blank lines go.
_SEPARATORS: Final = (re.compile(r"-{4,}"), re.compile(r"\t"), re.compile(r"[,，]"), re.compile(r"\|"))
_TWO_WORDS: Final = re.compile(r"(\S+)\s+(\S+)")


@dataclass(frozen=True)
class Secret:
    """What a `secret` holds: cards, or (no cards) the reason it is the shop's text and a safe quote of it."""

    cards: tuple[Card, ...]
    reason: str | None = None  # None: cards were read
    quote: str = ""  # the text with every line that could be a key hidden, at most QUOTE_LIMIT characters

    @property
    def is_text(self) -> bool:
        return self.reason is not None


def lines_of(secret: str) -> list[str]:
    """Non-blank lines, stripped (CRLF, LF or CR line ends)."""
    return [line for line in (raw.strip() for raw in secret.splitlines()) if line]


def parse_secret(secret: str) -> tuple[Card, ...]:
    """Cards from the free text of `data.secret`, one per non-blank line (no judging: see `read_secret`)."""
    return tuple(_card_from_line(line) for line in lines_of(secret))


def _card_from_line(line: str) -> Card:
    for separator in _SEPARATORS:
        parts = separator.split(line, maxsplit=1)
        if len(parts) == 2:
            number, password = parts[0].strip(), parts[1].strip()
            if number and password:
                return Card(password=password, number=number)
    two = _TWO_WORDS.fullmatch(line)
    if two is not None:
        return Card(password=two.group(2), number=two.group(1))
    return Card(password=line)


def is_prose(line: str) -> bool:
    """A line that reads as words for people: a shop notice, CJK text, or a sentence."""
    if any(notice in line for notice in NOTICES) or _CJK.search(line):
        return True
    words = line.split()
    return len(words) >= 3 and any(_SENTENCE_END.search(word) for word in words)


def read_secret(secret: object, num: int, key_pattern: re.Pattern[str] | None = None) -> Secret:
    """The cards in a `code: 200` answer's `secret`, or why it is the shop's text (rules in the module doc)."""
    if not isinstance(secret, str) or not secret.strip():
        return Secret((), "no secret")
    lines = lines_of(secret)
    if any(notice in secret for notice in NOTICES):
        return _text(lines, "a shop notice")
    if len(lines) < num:
        return _text(lines, f"{len(lines)} line(s) for {num} unit(s)")
    if key_pattern is not None:
        if not all(key_pattern.fullmatch(line) for line in lines):
            return _text(lines, "a line does not match key_pattern")
    elif any(is_prose(line) for line in lines):
        return _text(lines, "text, not keys")
    return Secret(parse_secret(secret))


def _text(lines: Sequence[str], reason: str) -> Secret:
    shown = "\n".join(line if is_prose(line) else _HIDDEN for line in lines)
    if len(shown) > QUOTE_LIMIT:
        shown = shown[: QUOTE_LIMIT - 1] + "…"
    return Secret((), reason, shown)
