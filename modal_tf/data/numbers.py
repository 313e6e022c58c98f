"""Numbers written in English words and in Chinese numerals: an exact, offline seq2seq task.

"three hundred and twelve" -> "三百一十二". Targets are verifiable and both sides
have different lengths (English is 3-10x longer), so the model must learn
place value, zero rules (一百零五, 一千零一十) and the leading-十 rule (十二, not 一十二).
English follows British usage ("and" before the last two digits).
"""

from __future__ import annotations

import random

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ZH_DIGITS = "零一二三四五六七八九"
ZH_UNITS = ("", "十", "百", "千")
LIMIT = 10**8


def english(number: int) -> str:
    """British English words for ``0 <= number < 10**9``."""
    if not 0 <= number < 10**9:
        raise ValueError(f"number must be in [0, 10**9), got {number}")
    if number < 20:
        return ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return TENS[tens] + (f"-{ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{ONES[hundreds]} hundred" + (f" and {english(rest)}" if rest else "")
    for size, word in ((10**6, "million"), (1000, "thousand")):
        if number >= size:
            high, rest = divmod(number, size)
            joiner = " and " if 0 < rest < 100 else " "
            return f"{english(high)} {word}" + (joiner + english(rest) if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def _section(number: int) -> str:
    """Chinese numerals for ``0 < number < 10**4`` with interior zeros as 零."""
    out, pending_zero = "", False
    for position in (3, 2, 1, 0):
        digit = number // 10**position % 10
        if digit == 0:
            pending_zero = pending_zero or bool(out)
            continue
        if pending_zero:
            out += "零"
            pending_zero = False
        out += ZH_DIGITS[digit] + ZH_UNITS[position]
    return out


def chinese(number: int) -> str:
    """Chinese numerals (simplified, everyday form) for ``0 <= number < 10**8``."""
    if not 0 <= number < LIMIT:
        raise ValueError(f"number must be in [0, 10**8), got {number}")
    if number == 0:
        return "零"
    high, low = divmod(number, 10**4)
    text = _section(high) + "万" if high else ""
    if low:
        text += ("零" if high and low < 1000 else "") + _section(low)
    # 10-19 read 十X, not 一十X (also 十万 for 100000-199999); inside a number 一十 stays (一百一十).
    return text[1:] if text.startswith("一十") else text


def number_pairs(count: int, seed: int, maximum: int = 999_999) -> list[tuple[str, str]]:
    """``count`` (english, chinese) pairs; magnitudes are log-uniform so small numbers appear too."""
    if maximum >= 10**8:
        raise ValueError(f"maximum must be < 10**8, got {maximum}")
    rng = random.Random(seed)
    digits = len(str(maximum))
    pairs = []
    for _ in range(count):
        number = min(maximum, rng.randrange(10 ** rng.randint(1, digits)))
        pairs.append((english(number), chinese(number)))
    return pairs
