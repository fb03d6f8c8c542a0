"""Writes flags/<name>.flags for every recipe in ls_keras.paper.recipes.RECIPES.

  python tools/write_flagfiles.py

The recipes are the source of truth; tests/test_recipes.py fails when a flagfile is stale.
"""

import os

from ls_keras.paper import recipes

FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")


def main() -> None:
  """Writes every flagfile."""
  for name in recipes.RECIPES:
    with open(os.path.join(FLAGS_DIR, f"{name}.flags"), "w") as f:
      f.write(recipes.flagfile(name))
  print(f"Wrote {len(recipes.RECIPES)} flagfiles to {FLAGS_DIR}.")


if __name__ == "__main__":
  main()
