"""The paper's claims, one module each, judged from the results table (experiments.results).

Each module has `evaluate(table, preset, report_dir) -> ClaimResult` (the numbers, the
verdict, the rule in words, the figures) and a pure `judge` of plain numbers that
`evaluate` calls, its thresholds named module constants printed in the rule. `STAGES`
is the order of the report; adding a claim is a module here and one line in it.
"""

from ls_keras.paper.claims import (
  accuracy,
  calibration,
  clusters,
  distillation,
  information,
  regimes,
  selective,
  when,
)
from ls_keras.paper.claims.common import ClaimResult

STAGES = (
  ("accuracy", accuracy),
  ("projection", clusters),
  ("calibration", calibration),
  ("training length", when),
  ("distillation", distillation),
  ("mutual information", information),
  ("selective classification", selective),
)

__all__ = ["STAGES", "ClaimResult", "regimes"]
