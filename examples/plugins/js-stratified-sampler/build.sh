#!/usr/bin/env bash
# Build the stratified-sampler plugin from JavaScript into a component:
#   build.sh OUT.wasm
# componentize-js (npm @bytecodealliance/componentize-js, pinned by package-lock.json and
# installed into this directory's node_modules on first use; Node.js 20+) compiles app.js
# against the
# `sampler` world of the contract that eva-host writes. No WASI feature is enabled: the
# plugin's only randomness is the host's seeded `random` import.
set -euo pipefail
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
here="$(cd "$(dirname "$0")" && pwd)"
eva_host="${EVA_HOST:-eva-host}"
cd "$here"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm ci --no-audit --no-fund --prefer-offline --fetch-retries=4 --loglevel=error >/dev/null
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$eva_host" plugin wit --out "$work/wit" >/dev/null
mkdir -p "$(dirname "$out")"
node_modules/.bin/componentize-js --wit "$work/wit" --world-name sampler \
    -d stdio -d random -d clocks -d http -d fetch-event -o "$out" app.js >/dev/null
