"""rPPG building blocks: classical methods, face ROI, streamed RGB traces, a deep-model wrapper and
synthetic pulse videos. Importing this package is cheap; video and torch code load on use."""

from .methods import METHODS, chrom, detrend, green, ica, lgi, omit, pbv, pos
from .trace import RGBTrace, extract_rgb_trace

__all__ = ["METHODS", "RGBTrace", "chrom", "detrend", "extract_rgb_trace", "green", "ica", "lgi", "omit",
           "pbv", "pos"]
