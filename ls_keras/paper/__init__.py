"""The main job: every claim of the paper, run and judged; the named recipes and presets."""
