"""Deep rPPG inference throughput: the TorchRppgModel wrapper on CUDA vs on the CPU, same run.

A PhysNet-sized random 3D CNN (user weights would be loaded the same way) on chunks of 128 face
crops of 72x72, diff-normalised. Prints frames/s on each device and the ratio; also checks that the
GPU output equals the CPU output. Needs CUDA for the GPU column (prints CPU only otherwise).

Usage: python benchmarks/rppg_deep_gpu.py [--seconds 60] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from vision_models.rppg.deep import TorchRppgModel


class PhysNetLike(torch.nn.Module):
    """Encoder of 3D convolutions with temporal pooling and upsampling, about PhysNet's size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)

        def block(cin: int, cout: int, k: tuple[int, int, int]) -> torch.nn.Sequential:
            pad = tuple(x // 2 for x in k)
            return torch.nn.Sequential(torch.nn.Conv3d(cin, cout, k, padding=pad), torch.nn.BatchNorm3d(cout),
                                       torch.nn.ReLU())

        self.body = torch.nn.Sequential(
            block(3, 16, (1, 5, 5)), torch.nn.MaxPool3d((1, 2, 2)),
            block(16, 32, (3, 3, 3)), block(32, 64, (3, 3, 3)), torch.nn.MaxPool3d((2, 2, 2)),
            block(64, 64, (3, 3, 3)), block(64, 64, (3, 3, 3)), torch.nn.MaxPool3d((2, 2, 2)),
            block(64, 64, (3, 3, 3)), block(64, 64, (3, 3, 3)),
            torch.nn.Upsample(scale_factor=(4, 1, 1)),
        )
        self.head = torch.nn.Conv3d(64, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(x))  # [N, 1, T, h, w]
        return y.mean(dim=(3, 4)).squeeze(1)


def throughput(device: str, frames: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    model = TorchRppgModel(PhysNetLike(), input_size=(72, 72), chunk_len=128, batch_size=batch, device=device)
    model.predict_frames(frames[: 128 * batch])  # warm-up (cuDNN autotune, allocations)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = model.predict_frames(frames)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(frames) / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="video length at 30 fps (default 60)")
    ap.add_argument("--batch", type=int, default=8, help="chunks per forward pass (default 8)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (int(args.seconds * 30), 72, 72, 3), dtype=np.uint8)
    cpu_fps, cpu_out = throughput("cpu", frames, args.batch)
    result = {"frames": len(frames), "cpu_fps": cpu_fps}
    print(f"CPU  ({torch.get_num_threads()} threads): {cpu_fps:9.1f} frames/s")
    if torch.cuda.is_available():
        gpu_fps, gpu_out = throughput("cuda", frames, args.batch)
        err = float(np.max(np.abs(gpu_out - cpu_out)) / (np.max(np.abs(cpu_out)) + 1e-12))
        result.update(gpu=torch.cuda.get_device_name(), gpu_fps=gpu_fps, ratio=gpu_fps / cpu_fps, max_rel_diff=err)
        print(f"CUDA ({torch.cuda.get_device_name()}): {gpu_fps:9.1f} frames/s · GPU/CPU = {gpu_fps / cpu_fps:.1f}x"
              f" · max relative difference {err:.2e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
