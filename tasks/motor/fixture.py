"""Write a small synthetic dataset in the MOTOR layout (for tests and for trying the task without
MOTOR-Bench): short PyAV-encoded videos, transcripts (files and inline), one audio track, an
imbalanced label distribution over three sessions, `manifest.csv` and `labels.json`.

    python -m tasks.motor.fixture OUT_DIR [--clips 12]
"""

from __future__ import annotations

import argparse
import csv
import json
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

VOCAB: dict[str, dict[str, str]] = {
    "behavior": {
        "on-task talk": "students discuss the task",
        "silent work": "students work on the task without talking",
        "off-task": "students talk or act about something other than the task",
    },
    "cognition": {
        "planning": "deciding goals, steps or who does what",
        "monitoring": "checking progress or understanding",
        "elaborating": "explaining, connecting or extending ideas",
        "no evidence": "no cognitive process is observable",
    },
    "emotion": {
        "positive": "interest, joy, enthusiasm",
        "neutral": "no clear emotion",
        "confused": "puzzlement or uncertainty",
        "frustrated": "annoyance or discouragement",
    },
}

TRANSCRIPTS = [
    "A: Let's first decide who reads the question. B: I'll read, you write.",
    "A: Wait, does this answer make sense? B: Let me check the numbers again.",
    "A: It's like the example from class, the force adds up. B: Yes, and friction works against it.",
    "(students write quietly)",
    "A: Did you watch the game yesterday? B: Yeah, it was great.",
    "A: I don't get it. B: Me neither, this is so annoying.",
]


def write_video(path: Path, color: tuple[int, int, int], n_frames: int = 6, size: int = 48, fps: int = 5) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(n_frames):
            img = np.zeros((size, size, 3), dtype=np.uint8)
            img[:] = color
            img[(i * 7) % size : (i * 7) % size + 8, :, :] = 255  # a moving bar
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_audio(path: Path, seconds: float = 0.5, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def label_rows(n_clips: int) -> list[dict[str, str]]:
    """Deterministic, imbalanced labels: the first label of each head is the most frequent."""
    heads = {h: list(labels) for h, labels in VOCAB.items()}
    pattern = [0, 0, 0, 1, 0, 2, 0, 1, 3, 0, 1, 2]
    rows = []
    for i in range(n_clips):
        rows.append({h: labels[pattern[(i + k) % len(pattern)] % len(labels)]
                     for k, (h, labels) in enumerate(heads.items())})
    return rows


def write_fixture(out: Path, n_clips: int = 12, *, n_sessions: int = 3, video_frames: int = 6) -> Path:
    """Write the dataset into `out` and return it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.json").write_text(
        json.dumps({h: {"labels": defs} for h, defs in VOCAB.items()}, indent=2), encoding="utf-8"
    )
    rows = []
    for i, labels in enumerate(label_rows(n_clips)):
        clip_id = f"clip{i:03d}"
        session = f"s{i % n_sessions + 1}"
        video = f"videos/{clip_id}.mp4"
        write_video(out / video, ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256), n_frames=video_frames)
        text = TRANSCRIPTS[i % len(TRANSCRIPTS)]
        if i % 2 == 0:  # half the transcripts as files, half inline
            transcript = f"transcripts/{clip_id}.txt"
            (out / "transcripts").mkdir(exist_ok=True)
            (out / transcript).write_text(text + "\n", encoding="utf-8")
        else:
            transcript = text
        audio = ""
        if i == 0:
            audio = f"audio/{clip_id}.wav"
            write_audio(out / audio)
        rows.append({"clip_id": clip_id, "video": video, "transcript": transcript, "audio": audio,
                     "session": session, "group": f"{session}-g{i % 2 + 1}", **labels})
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args(argv)
    print(write_fixture(args.out, args.clips))


if __name__ == "__main__":
    main()
