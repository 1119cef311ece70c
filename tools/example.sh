#!/usr/bin/env bash
# One command: install everything lossx needs, build it, train the digits example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
python3 -m pip install -q ".[example]"
python3 examples/digits_mlp.py
