#!/usr/bin/env bash
# The main job on the embedded default: self-improvement rounds on ManiSkill PickCube, CPU only.
#   lrm-robot improve --config configs/improve/pickcube_cpu.yaml
# 150 motion-planning demos -> behaviour-cloned small policy -> compact completion judge trained on
# the demos + 40 oracle-labelled calibration rollouts -> 2 rounds of 60 rollouts, judged, the kept ones
# added, fine-tuned, evaluated on 100 fresh seeds. Prints oracle success per round and the judge's
# precision/recall.
# Run it again to continue an interrupted run (LRM_OUT picks another run directory; extra
# arguments go to `lrm-robot improve`, e.g. --fresh or --set rounds=3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

out="${LRM_OUT:-outputs/improve-pickcube-cpu}"
.venv/bin/lrm-robot improve --config configs/improve/pickcube_cpu.yaml --output-dir "$out" "$@"
echo
echo "produced:"
echo "  $out/report.json   success per round (95% intervals), filter precision/recall, judge provenance, phase times"
echo "  $out/success.png   success per round and the filter's precision/recall"
echo "  $out/store         episode store: demos and every rollout with its LRM verdict and oracle flag"
echo "                     (inspect: .venv/bin/lrm-robot store info $out/store)"
