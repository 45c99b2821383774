"""INT8 quantization: calibration statistics, scale methods, Q/DQ placement and lowering."""
