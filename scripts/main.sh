#!/usr/bin/env bash
# The main job on the embedded default: self-improvement rounds on ManiSkill PushCube, CPU only.
#   lrm-robot improve --config configs/improve/pushcube_cpu.yaml
# 10 motion-planning demos (each holding its success 20 steps) -> behaviour-cloned small policy ->
# 160 explored calibration rollouts, labelled by the simulator -> the compact completion judge
# (5 cross-fitted folds) trained on the demos + those -> 3 rounds of 200 rollouts of 104 steps
# (the simulator never ends one), explored with parameter noise, their last frames judged, the kept
# ones added, fine-tuned, evaluated on 200 fresh seeds. Prints oracle success per round, its change from
# the base with an exact McNemar test, and the judge's precision/recall.
# Why PushCube and not PickCube: README, "What the main job shows".
# Run it again to continue an interrupted run (LRM_OUT picks another run directory; extra
# arguments go to `lrm-robot improve`, e.g. --fresh, --seed 1 or --set rounds=4).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

out="${LRM_OUT:-outputs/improve-pushcube-cpu}"
.venv/bin/lrm-robot improve --config configs/improve/pushcube_cpu.yaml --output-dir "$out" "$@"
echo
echo "produced:"
echo "  $out/report.json   success per round (95% intervals), filter precision/recall, judge provenance, phase times"
echo "  $out/success.png   success per round and the filter's precision/recall"
echo "  $out/store         episode store: demos and every rollout with its LRM verdict and oracle flag"
echo "                     (inspect: .venv/bin/lrm-robot store info $out/store)"
