"""Action-unit strings of the CASME II / SAMM coding files -> AU numbers, and the AU set per dataset.

Parsing follows MEB (`tvaranka/meb`, `dataset_utils.only_digit` over `"+"`-separated parts): each part
keeps only its digits, so laterality (`L10`, `R12`), the `AU` prefix (`AU4`) and intensity letters
(`12A`) are dropped; empty parts and parts without digits (`?`, `/`) are ignored.

AU sets (the binary detection targets; every other AU is ignored):
- CASME II: AU1, AU2, AU4, AU7, AU12, AU14, AU15, AU17 (the AUs of CASME II detection work with enough
  positives for a LOSO F1; not re-counted here against the official file, which we do not have).
- SAMM: AU1, AU2, AU4, AU7, AU12, AU14 (same criterion, same caveat).
The report lists the positive count of every AU so a user can check the set on their copy.
"""

from __future__ import annotations

AU_SETS: dict[str, tuple[int, ...]] = {
    "casme2": (1, 2, 4, 7, 12, 14, 15, 17),
    "samm": (1, 2, 4, 7, 12, 14),
}


def parse_aus(text: object) -> list[int]:
    """Sorted unique AU numbers of an AU string (`4+L10` -> [4, 10]; `R12` -> [12]; `AU4+AU7` -> [4, 7])."""
    if text is None:
        return []
    if isinstance(text, (int, float)):
        return [int(text)] if float(text).is_integer() and text > 0 else []
    out = set()
    for part in str(text).replace(",", "+").split("+"):
        digits = "".join(ch for ch in part if ch.isdigit())
        if digits:
            out.add(int(digits))
    return sorted(out)


def au_name(au: int) -> str:
    return f"AU{au}"


def au_vector(aus: list[int], au_set: tuple[int, ...]) -> dict[str, int]:
    """{"AU1": 0/1, ...} over the dataset's AU set, in its order."""
    present = set(aus)
    return {au_name(a): int(a in present) for a in au_set}
