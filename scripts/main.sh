#!/usr/bin/env bash
# The main job on the embedded default: ManiSkill PickCube on the CPU.
# Until the self-improvement round exists it runs the first slice end to end:
# record motion-planning demonstrations into a fresh episode store, summarise
# the store, and save a rerun recording of the first episode.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

out="${LRM_OUT:-outputs/slice-$(date +%Y%m%d-%H%M%S)}"
episodes="${LRM_DEMOS:-5}"
.venv/bin/lrm-robot demos --env PickCube-v1 -n "$episodes" --out "$out/store"
.venv/bin/lrm-robot store info "$out/store"
.venv/bin/lrm-robot view "$out/store" --episode 0 --save "$out/episode-0.rrd"
echo
echo "produced:"
echo "  $out/store         episode store ($episodes PickCube demonstrations; inspect: .venv/bin/lrm-robot store info $out/store)"
echo "  $out/episode-0.rrd rerun recording of episode 0 (open: .venv/bin/rerun $out/episode-0.rrd)"
