"""Official layouts of the face anti-spoofing sets -> `Video` items (one per recording).

Domain letters follow the cross-dataset literature: O = OULU-NPU, C = CASIA-FASD, I = Idiap
Replay-Attack, M = MSU-MFSD. Labels: 1 = live (bona fide), 0 = attack; attack types `print` or `replay`
(a photo or video shown on a screen). Splits `train`, `dev`, `test`.
- OULU-NPU: `{Train,Dev,Test}_files/<phone>_<session>_<user>_<file>.avi`; file 1 live, 2-3 print, 4-5 replay;
  `Protocols/Protocol_N/<Split>[_k].txt` lines `+1,1_1_01_1` select the videos of a protocol's split.
- CASIA-FASD: `{train,test}_release/<subject>/<n>.avi`; 1, 2, HR_1 live; 3-6, HR_2, HR_3 print (warped / cut
  photos); 7, 8, HR_4 replay.
- Replay-Attack: `{train,devel,test}/real/*.mov` and `.../attack/{fixed,hand}/attack_<kind>_client<id>_*.mov`;
  kind `print` -> print, `highdef`/`mobile` -> replay.
- MSU-MFSD [layout from its documentation, not checked against a copy]: `scene01/{real,attack}/*.{mov,mp4}`
  with `client<id>` in each name, and `train_sub_list.txt` / `test_sub_list.txt` listing client ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.core import DataError
from harness.datafiles import read_text

DOMAINS = {"O": "OULU-NPU", "C": "CASIA-FASD", "I": "Replay-Attack", "M": "MSU-MFSD"}
VIDEO_EXT = (".avi", ".mov", ".mp4")


@dataclass(frozen=True)
class Video:
    id: str  # "<domain>/<relative path without extension>"
    path: Path
    label: int  # 1 live, 0 attack
    attack: str  # live | print | replay
    split: str  # train | dev | test
    subject: str
    domain: str


def detect(path: Path) -> str | None:
    """The domain letter whose layout `path` holds."""
    if (path / "Train_files").is_dir() or (path / "Test_files").is_dir():
        return "O"
    if (path / "train_release").is_dir() or (path / "test_release").is_dir():
        return "C"
    if (path / "devel").is_dir() or (path / "train" / "real").is_dir() or (path / "test" / "real").is_dir():
        return "I"
    if (path / "scene01").is_dir():
        return "M"
    return None


def find_domains(root: Path) -> dict[str, Path]:
    """{letter: folder} for `root` itself or its sub-folders (a HARNESS_DATA-style root of several sets)."""
    own = detect(root)
    if own:
        return {own: root}
    found: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        letter = detect(sub)
        if letter and letter not in found:
            found[letter] = sub
    return found


OULU_SPLITS = {"train": "Train", "dev": "Dev", "test": "Test"}
OULU_NAME = re.compile(r"^(\d)_(\d)_(\d{2})_(\d)$")


def oulu_video(root: Path, split: str, name: str) -> Video:
    m = OULU_NAME.match(name)
    if not m:
        raise DataError(f"{root}: OULU-NPU video name {name!r} is not <phone>_<session>_<user>_<file>")
    file = int(m.group(4))
    attack = "live" if file == 1 else "print" if file in (2, 3) else "replay"
    path = root / f"{OULU_SPLITS[split]}_files" / f"{name}.avi"
    return Video(f"O/{name}", path, int(file == 1), attack, split, f"O{m.group(3)}", "O")


def oulu_all(root: Path) -> list[Video]:
    """Every video of the three OULU folders (the cross-dataset and incremental protocols use them all)."""
    out = []
    for split, folder in OULU_SPLITS.items():
        for p in sorted((root / f"{folder}_files").glob("*.avi")):
            out.append(oulu_video(root, split, p.stem))
    return out


def oulu_protocol(root: Path, protocol: int, split: str, k: int | None = None) -> list[Video]:
    """The videos a protocol file lists (`Protocol_3/Train_2.txt` for protocol 3, k=2)."""
    name = f"{OULU_SPLITS[split]}{'' if k is None else f'_{k}'}.txt"
    file = root / "Protocols" / f"Protocol_{protocol}" / name
    if not file.is_file():
        raise DataError(f"{file}: OULU-NPU protocol file is missing")
    out = []
    for n, line in enumerate(read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or parts[0] not in ("+1", "-1", "-2", "1"):
            raise DataError(f"{file}: line {n}: expected '+1,<video>' or '-1,<video>', got {line!r}")
        video = oulu_video(root, split, parts[1])
        if (parts[0] in ("+1", "1")) != (video.label == 1):
            raise DataError(f"{file}: line {n}: label {parts[0]} contradicts file type of {parts[1]}")
        out.append(video)
    return out


CASIA_LIVE, CASIA_REPLAY = {"1", "2", "HR_1"}, {"7", "8", "HR_4"}


def casia_all(root: Path) -> list[Video]:
    out = []
    for split, folder in (("train", "train_release"), ("test", "test_release")):
        for p in sorted((root / folder).glob("*/*.avi")):
            stem, subject = p.stem, p.parent.name
            attack = "live" if stem in CASIA_LIVE else "replay" if stem in CASIA_REPLAY else "print"
            out.append(Video(f"C/{folder}/{subject}/{stem}", p, int(attack == "live"), attack, split,
                             f"C{split}{subject}", "C"))
    return out


REPLAY_KIND = re.compile(r"attack_(print|highdef|mobile)_")
CLIENT = re.compile(r"client(\d+)")


def replay_all(root: Path) -> list[Video]:
    out = []
    for split, folder in (("train", "train"), ("dev", "devel"), ("test", "test")):
        for p in sorted((root / folder).rglob("*")):
            if p.suffix.lower() not in VIDEO_EXT or not p.is_file():
                continue
            rel = p.relative_to(root).with_suffix("")
            live = "real" in rel.parts
            kind = REPLAY_KIND.search(p.name)
            attack = "live" if live else ("print" if kind and kind.group(1) == "print" else "replay")
            client = CLIENT.search(p.name)
            out.append(Video(f"I/{rel.as_posix()}", p, int(live), attack, split,
                             f"I{client.group(1) if client else p.stem}", "I"))
    return out


def msu_all(root: Path) -> list[Video]:
    lists = {}
    for split in ("train", "test"):
        f = root / f"{split}_sub_list.txt"
        if not f.is_file():
            raise DataError(f"{f}: MSU-MFSD subject list is missing")
        lists[split] = {int(x) for x in read_text(f).split() if x.strip().isdigit()}
    out = []
    for p in sorted((root / "scene01").rglob("*")):
        if p.suffix.lower() not in VIDEO_EXT or not p.is_file():
            continue
        client = CLIENT.search(p.name)
        if not client:
            raise DataError(f"{p}: MSU-MFSD file name has no client<id>")
        cid = int(client.group(1))
        split = "train" if cid in lists["train"] else "test" if cid in lists["test"] else None
        if split is None:
            continue  # a client in neither list is not part of the protocol
        live = "real" in p.relative_to(root).parts
        attack = "live" if live else "print" if "printed" in p.name or "print" in p.name else "replay"
        out.append(Video(f"M/{p.relative_to(root).with_suffix('').as_posix()}", p, int(live), attack, split,
                         f"M{cid:03d}", "M"))
    return out


LOADERS = {"O": oulu_all, "C": casia_all, "I": replay_all, "M": msu_all}


def load_domain(letter: str, root: Path) -> list[Video]:
    videos = LOADERS[letter](root)
    if not videos:
        raise DataError(f"{root}: no {DOMAINS[letter]} videos found")
    return videos
