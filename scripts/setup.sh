#!/usr/bin/env bash
# Create .venv and install the pinned requirements (README: both commands start with this).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
