"""Deployment: ONNX / int8 export (export) and size and speed, the paper's Table 3 (speed). Imports the method
and eval/ (speed scores the int8 forms on STS-B to show what quantisation costs)."""
