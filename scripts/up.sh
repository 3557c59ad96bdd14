#!/usr/bin/env bash
# Runs GoMon in one process on its embedded defaults (`gomon up`), after installing the build's system packages
# when they are missing (as root). Arguments and GOMON_... variables pass through to `gomon up`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/install.sh
missing=()
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
install_packages up.sh "${missing[@]}"
# The `quick` profile: about four minutes from a fresh clone, where the image's release profile (whole-program
# optimisation) takes over ten on two cores.
cargo build --profile quick -q -p gomon
exec target/quick/gomon up "$@"
