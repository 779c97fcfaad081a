"""The key order of a dict built by Python 2.7, reproduced in pure Python.

MUStARD's official fold file `split_indices.p` holds positions in `json.load(...).keys()` as iterated
under Python 2.7, which is hash order, not file order. CPython 2.7 (64-bit, no hash randomisation)
stores keys in an open-addressing table; iteration walks the table slots. This module replays
exactly that: the string hash, the probe sequence and the resize rule of `Objects/dictobject.c`.
"""

from __future__ import annotations

from collections.abc import Iterable

_MASK64 = (1 << 64) - 1
_MIN_TABLE_SIZE = 8  # PyDict_MINSIZE
_PERTURB_SHIFT = 5


def python2_string_hash(key: str) -> int:
    """Python 2.7's hash of a str/unicode key on a 64-bit build, as an unsigned 64-bit number.

    (x = ord(s[0]) << 7; x = (1000003 * x) ^ ord(c) for each c; x ^= len(s); -1 becomes -2.)
    Unicode keys hash their code points the same way (UCS-4 build), so ASCII str and unicode agree.
    """
    if not key:
        return 0
    x = (ord(key[0]) << 7) & _MASK64
    for char in key:
        x = ((1000003 * x) & _MASK64) ^ ord(char)
    x ^= len(key)
    if x == _MASK64:  # -1 is reserved for errors in C
        x = _MASK64 - 1
    return x


def _insert(table: list[str | None], hashes: list[int], key: str, key_hash: int) -> None:
    """Put `key` in its first free slot along CPython 2.7's probe sequence (no deletions, no dummies)."""
    mask = len(table) - 1
    slot = key_hash & mask
    perturb = key_hash
    while table[slot & mask] is not None:
        slot = (5 * slot + perturb + 1) & _MASK64  # i = (i << 2) + i + perturb + 1, unmasked size_t
        perturb >>= _PERTURB_SHIFT
    table[slot & mask] = key
    hashes[slot & mask] = key_hash


def python2_dict_order(keys: Iterable[str]) -> list[str]:
    """Iteration order of a Python 2.7 dict into which the distinct `keys` were inserted in order."""
    table: list[str | None] = [None] * _MIN_TABLE_SIZE
    hashes = [0] * _MIN_TABLE_SIZE
    used = 0
    for key in keys:
        _insert(table, hashes, key, python2_string_hash(key))
        used += 1
        fill = used  # without deletions every filled slot is an active entry
        if fill * 3 >= len(table) * 2:
            min_used = used * (2 if used > 50000 else 4)
            new_size = _MIN_TABLE_SIZE
            while new_size <= min_used:
                new_size <<= 1
            old = [(k, h) for k, h in zip(table, hashes, strict=True) if k is not None]  # old-table slot order
            table, hashes = [None] * new_size, [0] * new_size
            for old_key, old_hash in old:
                _insert(table, hashes, old_key, old_hash)
    return [k for k in table if k is not None]
