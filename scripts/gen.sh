#!/usr/bin/env bash
# Regenerates the Python stubs from proto/ (the only way they may change).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=gen/python
rm -rf "$out/switchboard"
mkdir -p "$out"
"$PY" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  proto/switchboard/v1/*.proto
touch "$out/switchboard/__init__.py" "$out/switchboard/v1/__init__.py"
