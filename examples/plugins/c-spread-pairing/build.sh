#!/usr/bin/env bash
# Build the spread-pairing plugin from C into a component:
#   build.sh OUT.wasm
# eva-host writes the bindings of the `pairing` world, clang compiles them with the
# plugin against wasi-libc (Debian: clang-19, lld-19, wasi-libc), eva-host makes the
# core module a component. EVA_HOST (default: eva-host on PATH), CLANG and WASI_SYSROOT
# (default /usr) override the tools.
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
eva_host="${EVA_HOST:-eva-host}"
clang="${CLANG:-$(command -v clang-19 || command -v clang || echo clang-19)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$eva_host" plugin bindgen c --world pairing --out "$work/gen" >/dev/null
"$clang" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" -mexec-model=reactor -O2 -Wall -Werror \
    -I "$work/gen" -o "$work/core.wasm" \
    "$here/spread_pairing.c" "$work/gen/pairing.c" "$work/gen/pairing_component_type.o"
mkdir -p "$(dirname "$out")"
"$eva_host" plugin componentize "$work/core.wasm" --out "$out" >/dev/null
