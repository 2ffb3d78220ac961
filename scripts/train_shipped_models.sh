#!/usr/bin/env bash
# Regenerate the data, reference statistics and checkpoints that ship in checkpoints/ and
# thermalizer_core/systems/reference/. Each step is one `thermalizer` command; the training
# settings are the JSON files in configs/. The training commands resume from OUT/resume
# when run again with --resume after an interruption.
#
# On a 2-core CPU the whole script takes a few hours, most of it Kolmogorov data and the
# 2D training. Training caps its wall time with "max_minutes" in each config file.
set -euo pipefail
cd "$(dirname "$0")/.."
thermalizer=.venv/bin/thermalizer

# Kuramoto–Sivashinsky, L = 22, n = 64, one emulator step = 1 time unit.
$thermalizer generate-data --system ks --out data/ks --train 128 --valid 16 --test 16 --steps 1000 --batch-size 64 --seed 0
$thermalizer calibrate --system ks --batch 16 --steps 5000 --window 50 --spectrum-window 200 --lyapunov-steps 1000
$thermalizer train emulator --system ks --data data/ks --out checkpoints/ks-emulator --config configs/ks-emulator.json
$thermalizer train thermalizer --system ks --data data/ks --out checkpoints/ks-thermalizer --config configs/ks-thermalizer.json

# Two-layer QG, pyqg's default configuration, one emulator step = 1 day.
$thermalizer generate-data --system qg --out data/qg --train 64 --valid 8 --test 8 --steps 800 --batch-size 16 --seed 0
$thermalizer calibrate --system qg --batch 8 --steps 3000 --window 50 --spectrum-window 200 --lyapunov-steps 300
$thermalizer train emulator --system qg --data data/qg --out checkpoints/qg-emulator --config configs/qg-emulator.json
$thermalizer train thermalizer --system qg --data data/qg --out checkpoints/qg-thermalizer --config configs/qg-thermalizer.json

# Kolmogorov flow, nu = 0.005, 128^2 solver grid, 64^2 emulator grid, one emulator step = 0.06.
$thermalizer generate-data --system kolmogorov --out data/kolmogorov --train 12 --valid 2 --test 2 --steps 600 --batch-size 12 --seed 0
$thermalizer calibrate --system kolmogorov --data data/kolmogorov --batch 2 --window 50 --spectrum-window 200 --lyapunov-steps 150
$thermalizer train emulator --system kolmogorov --data data/kolmogorov --out checkpoints/kolmogorov-emulator --config configs/kolmogorov-emulator.json
$thermalizer train thermalizer --system kolmogorov --data data/kolmogorov --out checkpoints/kolmogorov-thermalizer --config configs/kolmogorov-thermalizer.json
