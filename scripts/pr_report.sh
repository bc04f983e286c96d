#!/usr/bin/env bash
# Write reports/pr.md: what this workspace changes against a base revision (metrics, params, plots).
#
#   bash scripts/pr_report.sh main          # after `dvc repro`; compare with the main branch
#   bash scripts/pr_report.sh HEAD~1
#
# The loss curves of both revisions are in reports/pr_plots/index.html (dvc plots diff); the report's
# PNG figures of both revisions are linked from pr.md, so `cml comment create --publish` can upload them.
set -euo pipefail
base=${1:?usage: scripts/pr_report.sh BASE_REVISION}
cd "$(dirname "$0")/.."
dvc plots diff "$base" --out reports/pr_plots > /dev/null
{
  echo "# Pipeline changes against \`$base\`"
  echo
  echo "## Metrics"
  echo
  dvc metrics diff "$base" --all --md --precision 4
  echo
  echo "## Params"
  echo
  dvc params diff "$base" --md
  echo
  echo "## Figures ($base | this change)"
  echo
  for figure in loss throughput_memory before_after; do
    rev=$(echo "$base" | tr '/~^' '___')
    echo "| $base | this change |"
    echo "| --- | --- |"
    echo "| ![](pr_plots/static/${rev}_reports_figures_${figure}.png) | ![](pr_plots/static/workspace_reports_figures_${figure}.png) |"
    echo
  done
  echo "Interactive loss curves of both revisions: \`reports/pr_plots/index.html\`."
} > reports/pr.md
echo "wrote reports/pr.md"
