"""The main job's report: one Markdown source, rendered to HTML by Python-Markdown.

It only renders: every number, verdict, rule and sentence comes from the `ClaimResult`s of
`ls_keras.paper.claims` (numbered claims, and unnumbered findings such as the "when"
figure) and the Regimes text.

index.md is the report; index.html is the same text through `markdown` (with its tables
extension) in a small page; figures are PNG files beside them, linked relatively, so the
page renders with its figures from a plain folder in any browser.
"""

import os
from typing import Dict, List, Sequence

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


def _finding(result) -> List[str]:
  """An unnumbered result: its title, figures, then its text."""
  lines = [f"## {result.title}", ""]
  for figure in result.figures:
    lines += [f"![{result.title}]({figure})", ""]
  return lines + [result.ours, ""]


def markdown_text(
  preset_name: str,
  regimes: str,
  results: Sequence,
  stage_times: Dict[str, float],
  run_info: Dict[str, object],
) -> str:
  """The whole report as Markdown: `results` are ClaimResults, in report order."""
  claims = [r for r in results if r.number is not None]
  lines = [
    f"# When Does Label Smoothing Help? Reproduced with ls_keras (preset `{preset_name}`)",
    "",
    f"Machine: {run_info['machine']}; precision {run_info['precision']}. {run_info['runs']} runs, "
    f"{run_info['run_seconds'] / 60:.1f} minutes of training and evaluation (as measured when each "
    f"ran); this call took {run_info['total'] / 60:.1f} minutes.",
    "",
    "Each verdict comes from a rule printed beside it, applied to the 95% confidence interval "
    "across seeds (Student t; paired by seed). With fewer than 3 seeds every verdict is "
    "inconclusive.",
    "",
    "| claim | verdict | effect: mean [95% CI] |",
    "| --- | --- | --- |",
  ]
  for c in claims:
    lines.append(
      f"| {c.number}. {c.title} | {c.verdict.outcome} | {c.verdict.estimate.format(3)} |"
    )
  lines += ["", "## Regimes", "", regimes, ""]
  for finding in results:
    if finding.number is None:
      lines += _finding(finding)
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
  lines += ["## Time per stage of this call", ""] + [
    f"- {name}: {seconds:.0f} s" for name, seconds in stage_times.items()
  ]
  return "\n".join(lines) + "\n"


def write(
  report_dir: str,
  preset_name: str,
  regimes: str,
  results: Sequence,
  stage_times: Dict[str, float],
  run_info: Dict[str, object],
) -> None:
  """Writes index.md and index.html (the same Markdown rendered) into report_dir."""
  text = markdown_text(preset_name, regimes, results, stage_times, run_info)
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.md"), text.encode())
  body = markdown.markdown(text, extensions=["tables"])
  page = (
    "<!doctype html>\n<html><head><meta charset='utf-8'><title>ls_keras report "
    f"({preset_name})</title>"
    f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
  )
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.html"), page.encode())
