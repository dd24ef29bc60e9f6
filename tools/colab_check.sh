#!/usr/bin/env bash
# The notebooks as a Colab user meets them, simulated: a fresh virtualenv holding only torch (and the notebook
# runner, papermill + ipykernel), an empty working folder, and each notebook's set-up cell pointed at a clone of
# this repository (REPO_URL): it clones and installs tinydistil with what the notebook needs. Notebooks 01-05 run
# top to bottom on the smoke preset, one after the other, sharing one runs folder (what Drive does in Colab).
#   bash tools/colab_check.sh [OUT_FILE]     (about 10 minutes on 2 CPU cores; prints a summary)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
git clone -q "$repo" "$tmp/clone"
python3 -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
sh "$repo/tools/install_torch.sh" "$py" >/dev/null 2>&1
"$py" -m pip install -q papermill ipykernel >/dev/null 2>&1
{
  echo "# simulated Colab check: $(date -u +%FT%TZ), repo $(git -C "$repo" rev-parse HEAD)"
  echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; python $("$py" -V 2>&1 | cut -d' ' -f2); torch $("$py" -c 'import torch; print(torch.__version__)')"
  mkdir -p "$tmp/work"
  echo "# before the first notebook, in the empty working folder: tinydistil importable? $(cd "$tmp/work" && "$py" -c 'import importlib.util as u; print(u.find_spec("tinydistil") is not None)')"
  data="$tmp/clone/tinydistil/sample_data"
  common="-p REPO_URL $tmp/clone -p runs_root $tmp/runs -p preset smoke"
  for nb in 01_distill_pretraining 02_glue 03_imdb 04_squad 05_speed; do
    extra=""
    [ "$nb" != 01_distill_pretraining ] && extra="-p data_dir $data -p results_dir $tmp/results"
    [ "$nb" = 05_speed ] && extra="$extra -p include_reference_archs False"
    s=$(date +%s)
    if (cd "$tmp/work" && OMP_NUM_THREADS=1 "$py" -m papermill "$repo/notebooks/$nb.ipynb" "$tmp/$nb.out.ipynb" \
          $common $extra -k python3 --log-level WARNING) > "$tmp/$nb.log" 2>&1; then
      echo "$nb: ran top to bottom in $(( $(date +%s) - s )) s"
    else
      echo "$nb: FAILED after $(( $(date +%s) - s )) s"; tail -20 "$tmp/$nb.log"
    fi
  done
  echo "# tables written: $(cd "$tmp/results" 2>/dev/null && ls *.csv | tr '\n' ' ')"
  echo "# report: $(test -f "$tmp/results/report/report.md" && echo written || echo missing); poster: $(test -f "$tmp/results/poster/poster.png" && echo written || echo missing)"
  echo "# total wall time: $(( $(date +%s) - t0 )) s"
} | tee ${out:+"$out"}
