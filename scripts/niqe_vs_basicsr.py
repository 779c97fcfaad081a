"""Fidelity check of `vision_models.niqe` against BasicSR's NIQE (a port of the authors' MATLAB code that
reproduces MATLAB's 5.7296 on baboon.png) with the official pristine parameters BasicSR ships.

Neither BasicSR nor the parameters are dependencies: point `--basicsr` at an unpacked BasicSR source tree
(`pip download basicsr==1.4.2 --no-deps --no-build-isolation`, then untar). Its `metrics/niqe.py` and
`utils/matlab_functions.py` are loaded from there with stub parent packages (importing `basicsr` itself
pulls in its whole training stack). Both implementations score the same grey images: scikit-image's
sample photos, clean, Gaussian-blurred (sigma 2) and with Gaussian noise (sigma 20), rounded to integers.

    python scripts/niqe_vs_basicsr.py --basicsr /tmp/basicsr-1.4.2/basicsr
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
from scipy import ndimage

from vision_models import niqe as N

IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "brick", "immunohistochemistry",
          "hubble_deep_field")


def load_basicsr_niqe(root: Path) -> types.ModuleType:
    def load(name: str, path: Path) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    for name in ("basicsr", "basicsr.metrics", "basicsr.utils"):
        sys.modules[name] = types.ModuleType(name)
    registry = types.ModuleType("basicsr.utils.registry")

    class _Registry:
        def register(self):  # noqa: ANN202 - a no-op decorator factory
            return lambda f: f

    registry.METRIC_REGISTRY = _Registry()  # type: ignore[attr-defined]
    sys.modules["basicsr.utils.registry"] = registry
    util = types.ModuleType("basicsr.metrics.metric_util")
    util.reorder_image = util.to_y_channel = None  # type: ignore[attr-defined]  # unused by niqe()
    sys.modules["basicsr.metrics.metric_util"] = util
    sys.modules.setdefault("scipy.ndimage.filters", ndimage)  # removed in new SciPy; same convolve
    load("basicsr.utils.matlab_functions", root / "utils" / "matlab_functions.py")
    return load("basicsr.metrics.niqe", root / "metrics" / "niqe.py")


def main() -> int:
    from skimage import data

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--basicsr", type=Path, required=True, help="the `basicsr` package folder of its source tree")
    args = parser.parse_args()
    theirs_mod = load_basicsr_niqe(args.basicsr)
    params = np.load(args.basicsr / "metrics" / "niqe_pris_params.npz")
    mu, cov = params["mu_pris_param"], params["cov_pris_param"]
    model = N.NiqeModel(mu.ravel(), cov, "BasicSR's official parameters")
    print(f"7x7 window max difference: {np.abs(params['gaussian_window'] - N.gaussian_window()).max():.2e}")
    rel = []
    for name in IMAGES:
        grey = N.to_gray(getattr(data, name)())
        noisy = grey + np.random.default_rng(0).normal(0, 20, grey.shape)
        for label, x in (("clean", grey), ("blur", np.round(ndimage.gaussian_filter(grey, 2))),
                         ("noise", np.round(np.clip(noisy, 0, 255)))):
            ours = N.niqe(x, model)
            theirs = float(theirs_mod.niqe(x.copy(), mu, cov, params["gaussian_window"]))
            rel.append(abs(ours - theirs) / theirs)
            print(f"{name:22s} {label:6s} ours {ours:9.5f}  basicsr {theirs:9.5f}  rel. diff {rel[-1]:.1e}")
    print(f"{len(rel)} images: median relative difference {np.median(rel):.1e}, worst {max(rel):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
