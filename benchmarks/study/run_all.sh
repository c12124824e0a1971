#!/usr/bin/env bash
# The whole descriptor study, one job at a time (see docs/descriptor.md).
# Features go to /tmp/lookalike-study/*.npz; every evaluated pipeline is appended to
# /tmp/lookalike-study/results.jsonl and printed as a markdown table row.
set -euo pipefail
cd "$(dirname "$0")/../.."
X="python benchmarks/study/extract.py"
E="python benchmarks/study/evaluate.py"
if [ "${SKIP_EXTRACT:-0}" != 1 ]; then
  $X --model lite0 --size 224 --resize squash --flip
  $X --model lite0 --size 224 --resize squash --flip --instance
  $X --model lite0 --size 256 288 --resize squash
  $X --model lite0 --size 256 288 --resize squash --instance
  $X --model lite0 --size 224 --resize aspect
  $X --model lite0 --size 224 --resize aspect --instance
  $X --model lite2 --size 260 --resize squash
  $X --model lite2 --size 260 --resize squash --instance
fi
$E --suite lite0
$E --suite combos
$E --suite sizes
$E --suite lite2
python benchmarks/study/costs.py
