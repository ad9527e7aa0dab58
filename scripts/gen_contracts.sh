#!/usr/bin/env bash
# Regenerates libs/contracts from protos/ (typed Python, gRPC aio stubs included).
# Generated files are committed and never edited by hand; `make test` checks they are fresh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/libs/contracts/src"
cd "$root/protos"
rm -rf "$out/greenpartners"
mkdir -p "$out"
mapfile -t protos < <(find greenpartners -name '*.proto' | sort)
python -m grpc_tools.protoc -I . \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}"
# Packages need an __init__.py each so that the contracts install as a regular package.
find "$out/greenpartners" -type d -exec sh -c 'for d; do : > "$d/__init__.py"; done' _ {} +
: > "$out/greenpartners/py.typed"
