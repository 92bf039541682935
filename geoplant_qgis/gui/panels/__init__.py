"""The dock's panels, one file each: model, inputs, area, grid, outputs, run, identify."""
