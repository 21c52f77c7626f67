"""The cost model: theory (E, S, best N), calibration (c, v(N)) and auto N."""
