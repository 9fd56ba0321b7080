"""Finding a dish by name or pinyin initials, the way a cashier types on a small keyboard.

"mf" finds 米饭, "srkxc" (or "srk") finds 蒜蓉空心菜, "rice" finds Steamed rice. The menu has no
pinyin, so the initials come from a small bundled table (``assets/ui/pinyin-initials.txt``: the
6763 hanzi of GB2312 and every character of the demo menu, one line per initial), made once with
the ``pypinyin`` package; nothing is looked up at run time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path

from terminal.core.menu import MenuItem

logger = logging.getLogger(__name__)

TABLE = Path(__file__).resolve().parent.parent.parent / "assets" / "ui" / "pinyin-initials.txt"


@functools.cache
def _initial_of() -> dict[str, str]:
    table: dict[str, str] = {}
    try:
        lines = TABLE.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        logger.warning("pinyin table %s unreadable (%s): search by name only", TABLE, exc)
        return table
    for line in lines:
        if not line or line.startswith("#"):
            continue
        letter, _, characters = line.partition("\t")
        for character in characters:
            table[character] = letter
    return table


def initials(text: str) -> str:
    """The pinyin initials of ``text``: one lower-case letter per hanzi; letters and digits are
    kept (lower-cased), anything else is dropped. ``initials("米饭") == "mf"``."""
    table = _initial_of()
    out = []
    for character in text:
        if character in table:
            out.append(table[character])
        elif character.isascii() and character.isalnum():
            out.append(character.lower())
    return "".join(out)


def matches(item: MenuItem, query: str) -> bool:
    """Whether ``query`` finds ``item``: in its Chinese or English name or id, or as the start
    (or any part) of its pinyin initials."""
    needle = query.strip().casefold()
    if not needle:
        return True
    if needle in item.name_zh or needle in item.name_en.casefold() or needle in item.id:
        return True
    compact = needle.replace(" ", "")
    return compact.isascii() and compact in initials(item.name_zh)


def search(items: Iterable[MenuItem], query: str, limit: int | None = None) -> list[MenuItem]:
    """The items ``query`` finds: those whose initials are exactly it first, then those whose
    initials start with it, then the rest; shorter names first within each."""
    needle = query.strip().casefold().replace(" ", "")

    def rank(item: MenuItem) -> tuple[int, int, str]:
        letters = initials(item.name_zh)
        closeness = 0 if letters == needle else 1 if letters.startswith(needle) else 2
        return closeness, len(item.name_zh), item.name_zh

    found = sorted((item for item in items if matches(item, query)), key=rank)
    return found[:limit] if limit is not None else found
