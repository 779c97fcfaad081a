"""fdeid's solvers: the generic face protections of `vision_models.faces.solvers` (identity, blur,
pixelate, mask, noise, ksame, sd-inpaint), each protecting both images of a pair."""

from __future__ import annotations

from vision_models.faces.solvers import PROTECTIONS, register_protections

register_protections("fdeid")
SOLVERS = tuple(PROTECTIONS)
