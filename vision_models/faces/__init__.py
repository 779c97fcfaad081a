"""Face models shared by the privacy tasks: dlib detection, recognisers by spec, protections, quality.

`detect` (dlib HOG + landmarks, model files by path), `recognizers` (`load_recognizer("dlib")`,
`arcface:PATH.onnx`, `facenet:PATH`, `adaface:PATH`), `protect` (blur, pixelate, mask, noise, k-Same),
`quality` (SSIM, PSNR, LPIPS, FID with pluggable feature nets).
"""
