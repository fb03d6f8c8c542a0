"""The main job's report: one Markdown source, rendered to HTML by Python-Markdown.

index.md is the report; index.html is the same text through `markdown` (with its tables
extension) in a small page; figures are PNG files beside them, linked relatively, so the
page renders with its figures from a plain folder in any browser.
"""

import os
from typing import Dict, List, Optional, Sequence

import markdown

from ls_keras.core import workdir as workdir_lib
from ls_keras.paper import verdicts

_STYLE = (
  "body{font-family:sans-serif;max-width:62em;margin:auto;padding:1em;line-height:1.45}"
  "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}"
  "img{max-width:100%}code{background:#f4f4f4}.held{color:#161}.notheld{color:#a11}.unsure{color:#a60}"
)
_CLASS = {verdicts.HELD: "held", verdicts.NOT_HELD: "notheld", verdicts.INCONCLUSIVE: "unsure"}


def _verdict_line(verdict: verdicts.Verdict) -> str:
  label = verdict.outcome.capitalize()
  return (
    f'<span class="{_CLASS[verdict.outcome]}">**{label}**</span>: {verdict.effect} = '
    f"{verdict.estimate.format(3)} (mean [95% CI], {verdict.estimate.n} seeds)."
  )


def _when_text(when: Optional[dict]) -> List[str]:
  if not when:
    return []
  epochs, base, temperature = when["epochs"], when["baseline_ece"], when["baseline_temperature"]
  lines = [
    "## When does label smoothing help?",
    "",
    f"![Calibration against training length]({when['figure']})",
    "",
    "The figure follows the LS grid of claims 1-3 through training (means over seeds, test "
    "split). After "
    f"epoch {epochs[0]} the hard-target baseline has ECE {base[0]:.3f} (fitted T = "
    f"{temperature[0]:.2f}); "
    f"after epoch {epochs[-1]}, ECE {base[-1]:.3f} (T = {temperature[-1]:.2f}), against "
    f"{when['scaled_last']:.3f} once temperature-scaled.",
  ]
  over = when["over_confident_from"]
  lines.append(
    f"The baseline is over-confident (T >= 1.3) from epoch {over} on."
    if over
    else "The baseline never became over-confident (T >= 1.3) here."
  )
  for alpha, epoch in when["crossings"].items():
    first, last = when["ls_ece_first"][alpha], when["ls_ece_last"][alpha]
    crossing = (
      f"its ECE falls below the baseline's from epoch {epoch} on"
      if epoch
      else "its ECE stays above the baseline's throughout"
    )
    lines.append(
      f"- alpha {alpha:g}: ECE {first:.3f} after epoch {epochs[0]}, {last:.3f} at the end; "
      f"{crossing}."
    )
  first_base, last_base = base[0], base[-1]
  above_first = [a for a, e in when["ls_ece_first"].items() if e > first_base]
  best = min(when["ls_ece_last"], key=when["ls_ece_last"].get)
  lines += [
    "",
    "Read left to right: after the first evaluation, "
    + (
      f"every alpha's ECE is above the baseline's ({first_base:.3f}): LS only makes a calibrated "
      "network under-confident there. "
      if len(above_first) == len(when["ls_ece_first"])
      else f"alphas {', '.join(f'{a:g}' for a in above_first) or 'none'} are above the baseline's "
      f"{first_base:.3f}. "
    )
    + f"At the end, alpha {best:g} has the lowest ECE ({when['ls_ece_last'][best]:.3f}) against "
    f"the "
    f"baseline's {last_base:.3f} and temperature scaling's {when['scaled_last']:.3f}"
    + (
      ": label smoothing helps calibration once the baseline is over-confident, and only then."
      if when["ls_ece_last"][best] < last_base and above_first
      else "."
    ),
    "",
  ]
  return lines


def markdown_text(
  preset_name: str,
  regimes: str,
  claims: Sequence,
  when: Optional[dict],
  stage_times: Dict[str, float],
  run_info: Dict[str, object],
) -> str:
  """The whole report as Markdown."""
  lines = [
    f"# When Does Label Smoothing Help? Reproduced with ls_keras (preset `{preset_name}`)",
    "",
    f"Machine: {run_info['machine']}; precision {run_info['precision']}. {run_info['runs']} runs, "
    f"{run_info['run_seconds'] / 60:.1f} minutes of training and evaluation (as measured when each "
    f"ran); this call took {run_info['total'] / 60:.1f} minutes.",
    "",
    "Each verdict comes from a rule printed beside it, applied to the 95% confidence interval "
    "across seeds "
    "(Student t; paired by seed). With fewer than 3 seeds every verdict is inconclusive.",
    "",
    "| claim | verdict | effect: mean [95% CI] |",
    "| --- | --- | --- |",
  ]
  for c in claims:
    lines.append(
      f"| {c.number}. {c.title} | {c.verdict.outcome} | {c.verdict.estimate.format(3)} |"
    )
  lines += ["", "## Regimes", "", regimes, ""]
  lines += _when_text(when)
  for c in claims:
    lines += [
      f"## Claim {c.number}: {c.title}",
      "",
      f"**Paper:** {c.paper}",
      "",
      f"**Here, in** {c.regime}",
      "",
      "**Here:**",
      "",
      c.ours,
      "",
      f"**Verdict:** {_verdict_line(c.verdict)}",
      "",
    ]
    for part in c.parts:
      lines.append(f"- {_verdict_line(part)}")
    if c.parts:
      lines.append("")
    lines += [f"*Rule:* {c.verdict.rule}.", ""]
    lines += [f"![{figure}]({figure})" for figure in c.figures] + [""]
  lines += ["## Time per stage", ""] + [
    f"- {name}: {seconds:.0f} s" for name, seconds in stage_times.items()
  ]
  return "\n".join(lines) + "\n"


def write(
  report_dir: str,
  preset_name: str,
  regimes: str,
  claims: Sequence,
  when: Optional[dict],
  stage_times: Dict[str, float],
  run_info: Dict[str, object],
) -> None:
  """Writes index.md and index.html (the same Markdown rendered) into report_dir."""
  text = markdown_text(preset_name, regimes, claims, when, stage_times, run_info)
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.md"), text.encode())
  body = markdown.markdown(text, extensions=["tables"])
  page = (
    "<!doctype html>\n<html><head><meta charset='utf-8'><title>ls_keras report "
    f"({preset_name})</title>"
    f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
  )
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.html"), page.encode())
