#!/usr/bin/env bash
# One command: install everything (system packages, the package, test deps) and
# run the test suite. CI runs exactly this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
python3 -m pip install -q ".[test]"
python3 -m lossx info
# Run from tests/ so that `import lossx` resolves to the installed package.
cd tests && python3 -m pytest -q -p no:cacheprovider "$@" .
