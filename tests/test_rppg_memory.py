"""Memory stays flat in the video's length (issue 13): solving a 16 s video after a 3 s one raises the
peak RSS of a fresh process by far less than the frames would take, while holding the 16 s video's
frames (the control, as a read-everything script does) raises it by tens of MB, so the measure can
see a pipeline that keeps frames. `benchmarks/rppg_speed.py` measures the same at 640x480, 20 vs 60 s."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from vision_models.rppg.synthetic import write_ubfc_subject

REPO = Path(__file__).resolve().parents[1]
FRAME_MB = 320 * 240 * 3 / 2**20

PEAKS = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from tasks.rppg import RppgTask
    from tasks.rppg.solvers import SOLVERS
    from vision_models.rppg.video import open_frames

    def peak_mb():
        # VmHWM: this process image's own peak. ru_maxrss survives exec, so a child of a big pytest
        # process would report the parent's size from the start and every peak would be equal.
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    root = Path(sys.argv[1])
    samples = {s.id: s for fold in RppgTask().folds(root, "ubfc") for s in fold.test}
    solver = SOLVERS["pos"]()  # the per-video path of a worker process: decode, track, trace, POS, windows
    short = solver.predict(samples["short"])
    after_short = peak_mb()
    long = solver.predict(samples["long"])
    after_long = peak_mb()
    held = [frame.copy() for _, frame in open_frames(root / "long" / "vid.avi", bgr=True).frames]
    print(json.dumps({"short": after_short, "long": after_long, "held": peak_mb(), "frames": len(held),
                      "bvp": [len(short["bvp"]), len(long["bvp"])]}))
""")


def test_peak_memory_does_not_grow_with_the_video_length(tmp_path: Path) -> None:
    for name, seconds in (("short", 3.0), ("long", 16.0)):
        write_ubfc_subject(tmp_path / name, hr_bpm=72.0, seconds=seconds, size=(320, 240), seed=1)
    out = subprocess.run([sys.executable, "-c", PEAKS, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    assert peaks["bvp"] == [90, 480] and peaks["frames"] == 480  # both videos were solved in full
    all_frames_mb = 480 * FRAME_MB  # ~105 MB
    assert peaks["long"] - peaks["short"] < 0.1 * all_frames_mb, peaks
    assert peaks["held"] - peaks["long"] > 0.25 * all_frames_mb, peaks  # the control: kept frames do show
