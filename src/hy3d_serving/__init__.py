"""hy3d_serving: what the Triton Python models share (tensor helpers, engine selection, errors)."""
