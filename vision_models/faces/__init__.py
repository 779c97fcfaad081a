"""Face models shared by the privacy tasks (fdeid, face_anon; generic, no task imports).

`detect` (dlib HOG + 5/68 landmarks, model files read by path), `recognizers` (`load_recognizer("dlib")`,
`arcface:PATH.onnx`, `facenet:PATH`, `adaface:PATH`), `protect` (blur, pixelate, mask, noise, k-Same as
pure functions), `solvers` (those protections and SD inpainting as artifact-writing solvers that a task
registers), `anonymize` (landmark region masks, attribute-guided inpainting), `quality` (SSIM, PSNR,
LPIPS, FID with pluggable feature nets), `memo` (a thread-safe once-per-key memo).
"""
