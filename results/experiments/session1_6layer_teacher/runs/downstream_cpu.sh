#!/usr/bin/env bash
# The measured downstream run of the cpu-preset teacher and student (GLUE tasks with local train+dev, IMDb).
# Run from the repository root after `reproduce --preset cpu`; writes runs/eval/*, results/table{1,2}_*.csv.
set -euo pipefail
D=${TINYDISTIL_DATA_DIR:-../shared/data}
FT="--seeds 2 --epochs 3 --max-train-examples 1000"
for who in teacher student; do
  /usr/bin/time -f "glue $who wall %e s" python -m tinydistil glue --model runs/cpu/$who/model --data-dir "$D" $FT
  /usr/bin/time -f "imdb $who wall %e s" python -m tinydistil imdb --model runs/cpu/$who/model --data-dir "$D" $FT
done
python -m tinydistil tables --teacher runs/eval/cpu_teacher --student runs/eval/cpu_student --results-dir results
