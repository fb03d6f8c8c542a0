"""Experiments as data: plans of runs (`plan`), the Figure 5 sweep (`kd_sweep`), results tables.

This layer sits above `training` and `distillation` (it runs them) and below `paper` (the
presets, claims and report, which import it). Importing it starts no TensorFlow: planning
is pure Python, and the functions that run or read runs import what they need inside.
"""
