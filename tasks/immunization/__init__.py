"""immunization: image immunization against diffusion editing (SIFM, arXiv 2512.14320).

Why a package: an immunizer (solver) perturbs an image within an L-inf budget; an editor
(InstructPix2Pix, SD inpainting, SDEdit, or a tiny random pipeline) edits the clean and the
protected image with the same prompt and seed; MLLM judges answer two yes/no questions per edit
and the Immunization Success Rate (ISR) is the share of edits judged a failure. Split by concern:
``loader`` (folder + prompts.csv), ``solvers`` (pgd-encoder, sifm, noise, jpeg, blur),
``scorer`` (edits, judges, quality metrics), ``task`` (registration and metrics).
"""
