"""Small synthetic face anti-spoofing videos in the official layouts (OULU-NPU, CASIA-FASD, Replay-Attack,
MSU-MFSD), for tests and the README quick start (none of the real sets may be redistributed).

A live video is a smooth skin-toned texture; a print attack is desaturated with a halftone dot pattern; a
replay attack has screen moire stripes and a blue cast. Each dataset (domain) shifts brightness and tint,
so a detector trained on one domain loses some accuracy on another. Videos are MJPG AVI (OpenCV), 48x48,
10 frames. `python -m tasks.pad_il.synthetic OUT` writes all four datasets under OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SIZE, N_FRAMES = 48, 10
DOMAIN_SHIFT = {"O": (0, 0, 0), "C": (25, -10, -15), "I": (-20, 15, 5), "M": (10, 10, -25)}
REPLAY_CAST = {"O": 2, "C": 2, "I": 0, "M": 0}  # blue or red cast of replay attacks


def _frames(kind: str, domain: str, rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    base = cv2.resize(rng.random((6, 6, 3)).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    skin = np.array([200, 150, 120], np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    out = []
    for t in range(N_FRAMES):
        img = skin * (0.75 + 0.35 * base) + rng.normal(0, 6, (SIZE, SIZE, 3))
        if kind == "print":
            grey = img.mean(axis=2, keepdims=True)
            img = 0.5 * img + 0.5 * grey
            img *= (0.8 + 0.2 * ((xx % 3 == 0) & (yy % 3 == 0)))[:, :, None]
        elif kind == "replay":
            img *= (0.85 + 0.15 * np.sin((xx + yy + t) * 1.3))[:, :, None]
            img[:, :, REPLAY_CAST[domain]] += 25  # the screen's colour cast differs between datasets
        img += np.array(DOMAIN_SHIFT[domain], np.float32)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def write_video(path: Path, kind: str, domain: str, rng: np.random.Generator) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 25.0, (SIZE, SIZE))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in _frames(kind, domain, rng):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


OULU_KIND = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}


def write_oulu(root: str | Path, phones: tuple[int, ...] = (1, 2), users: dict[str, tuple[int, ...]] | None = None,
               sessions: tuple[int, ...] = (1,), seed: int = 0) -> Path:
    """Train/Dev/Test_files + Protocols 1-4. Protocols 1/2 list every video of each split; 3/4 are six
    leave-one-phone-out lists (Train_k/Dev_k without phone k, Test_k with only phone k; a phone absent
    from `phones` gives an empty list)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    users = users or {"Train": (1, 2), "Dev": (21,), "Test": (36, 37)}
    lists: dict[str, list[str]] = {}
    for split, ids in users.items():
        names = []
        for phone in phones:
            for session in sessions:
                for user in ids:
                    for file, kind in OULU_KIND.items():
                        name = f"{phone}_{session}_{user:02d}_{file}"
                        write_video(root / f"{split}_files" / f"{name}.avi", kind, "O", rng)
                        names.append(name)
        lists[split] = names

    def lines(names: list[str]) -> str:
        return "".join(f"{'+1' if n.endswith('_1') else '-1'},{n}\n" for n in names)

    for p in (1, 2):
        for split, names in lists.items():
            (root / "Protocols" / f"Protocol_{p}").mkdir(parents=True, exist_ok=True)
            (root / "Protocols" / f"Protocol_{p}" / f"{split}.txt").write_text(lines(names))
    for p in (3, 4):
        (root / "Protocols" / f"Protocol_{p}").mkdir(parents=True, exist_ok=True)
        for k in range(1, 7):
            for split, names in lists.items():
                keep = [n for n in names if (int(n[0]) == k) == (split == "Test")]
                (root / "Protocols" / f"Protocol_{p}" / f"{split}_{k}.txt").write_text(lines(keep))
    return root


def write_casia(root: str | Path, train_subjects: tuple[int, ...] = (1, 2), test_subjects: tuple[int, ...] = (1, 2),
                seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    kinds = {"1": "live", "HR_1": "live", "3": "print", "HR_3": "print", "7": "replay", "HR_4": "replay"}
    for folder, subjects in (("train_release", train_subjects), ("test_release", test_subjects)):
        for s in subjects:
            for stem, kind in kinds.items():
                write_video(root / folder / str(s) / f"{stem}.avi", kind, "C", rng)
    return root


def write_replay(root: str | Path, clients: dict[str, tuple[int, ...]] | None = None, seed: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    clients = clients or {"train": (1, 2), "devel": (3,), "test": (4, 5)}
    for folder, ids in clients.items():
        for c in ids:
            write_video(root / folder / "real" / f"client{c:03d}_session01_webcam_authenticate_adverse_1.mov",
                        "live", "I", rng)
            write_video(root / folder / "real" / f"client{c:03d}_session01_webcam_authenticate_controlled_2.mov",
                        "live", "I", rng)
            write_video(root / folder / "attack" / "fixed" /
                        f"attack_print_client{c:03d}_session01_highdef_photo_adverse.mov", "print", "I", rng)
            write_video(root / folder / "attack" / "hand" /
                        f"attack_mobile_client{c:03d}_session01_mobile_video_adverse.mov", "replay", "I", rng)
    return root


def write_msu(root: str | Path, train: tuple[int, ...] = (2, 3), test: tuple[int, ...] = (5, 6), seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c in (*train, *test):
        write_video(root / "scene01" / "real" / f"real_client{c:03d}_android_SD_scene01.mp4", "live", "M", rng)
        write_video(root / "scene01" / "real" / f"real_client{c:03d}_laptop_SD_scene01.mov", "live", "M", rng)
        write_video(root / "scene01" / "attack" / f"attack_client{c:03d}_android_SD_printed_photo_scene01.mp4",
                    "print", "M", rng)
        write_video(root / "scene01" / "attack" / f"attack_client{c:03d}_laptop_SD_ipad_video_scene01.mov",
                    "replay", "M", rng)
    (root / "train_sub_list.txt").write_text("".join(f"{c:03d}\n" for c in train))
    (root / "test_sub_list.txt").write_text("".join(f"{c:03d}\n" for c in test))
    return root


def write_all(root: str | Path) -> Path:
    root = Path(root)
    write_msu(root / "MSU-MFSD")
    write_casia(root / "CASIA-FASD")
    write_replay(root / "Replay-Attack")
    write_oulu(root / "OULU-NPU")
    return root


if __name__ == "__main__":
    out = write_all(sys.argv[1] if len(sys.argv) > 1 else "pad-synthetic")
    print(f"wrote synthetic OULU-NPU, CASIA-FASD, Replay-Attack and MSU-MFSD copies under {out}")
