#!/usr/bin/env bash
# Build the plugin into OUT (default: length-regret.wasm) with componentize-py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-length-regret.wasm}")"
cpy="$(command -v componentize-py || true)"
if [ -z "$cpy" ]; then
    python3 -m pip install -q componentize-py==0.25.1
    cpy="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/componentize-py"
fi
cd "$here"
"$cpy" -d ../../../wit -w info-metric componentize app -o "$out"
