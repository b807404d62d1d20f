#!/usr/bin/env bash
# Regenerates what is derived from proto/ (the only way it may change):
#   python  gen/python            Python stubs (grpcio-tools)
#   node    clients/node/gen      TypeScript (ES modules + .d.ts) by protoc-gen-es, via buf
#                                 generate with the local plugin (clients/node/buf.gen.yaml)
#           clients/node/types    the Node client's declarations, emitted by tsc from its JSDoc
# Usage: scripts/gen.sh [python|node]... (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

gen_python() {
  local out=gen/python
  rm -rf "$out/switchboard"
  mkdir -p "$out"
  "$PY" -m grpc_tools.protoc -Iproto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/switchboard/v1/*.proto
  touch "$out/switchboard/__init__.py" "$out/switchboard/v1/__init__.py"
}

gen_node() (
  cd clients/node
  node_modules/.bin/buf generate --template buf.gen.yaml
  rm -rf types
  node_modules/.bin/tsc -p tsconfig.build.json
)

for part in "${@:-python node}"; do
  for each in $part; do "gen_$each"; done
done
