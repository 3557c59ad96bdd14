# shellcheck shell=bash
# Installing what the scripts need. Source this file.

# install_packages WHO PACKAGE...: installs the named Debian packages (the ones found missing) with apt-get when
# running as root; otherwise says exactly what to install and fails. Does nothing without packages.
install_packages() {
  local who=$1
  shift
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$who: missing packages: $* (run as root, or: sudo apt-get install $*)" >&2
    return 1
  fi
  echo "$who: installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# install_tansu WHO: the Kafka-protocol broker tansu, built with cargo when missing (about eight minutes, once per
# machine; it lands in ~/.cargo/bin).
install_tansu() {
  cargo_bin_on_path
  command -v tansu >/dev/null && return 0
  echo "$1: installing tansu (Kafka-compatible broker) with cargo, about eight minutes"
  cargo install --quiet tansu --features dynostore
}

# cargo-deny, the dependency policy check (deny.toml), installed once per machine.
install_cargo_deny() {
  cargo_bin_on_path
  command -v cargo-deny >/dev/null && return 0
  echo "$1: installing cargo-deny with cargo, about three minutes"
  cargo install --quiet --locked cargo-deny --version 0.20.2
}

# Puts ~/.cargo/bin, where cargo installs programs, on PATH.
cargo_bin_on_path() {
  case ":$PATH:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$PATH:$HOME/.cargo/bin" ;;
  esac
}

# python_venv WHO DIR REQUIREMENT...: a Python virtual environment in DIR holding exactly REQUIREMENT... (pip
# specifiers), made again only when the list changes.
python_venv() {
  local who=$1 dir=$2
  shift 2
  if [ "$(cat "$dir/requirements" 2>/dev/null)" != "$*" ]; then
    echo "$who: installing $* in $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" >"$dir/requirements"
  fi
}

# debug_gomon WHO: prints the path of the debug gomon binary, building it first unless it is newer than every
# source file (scripts/test.sh's `cargo test` usually just made it).
debug_gomon() {
  local gomon=${CARGO_TARGET_DIR:-target}/debug/gomon
  if [ ! -x "$gomon" ] || [ -n "$(find crates Cargo.toml Cargo.lock -newer "$gomon" -type f -print -quit)" ]; then
    echo "$1: building gomon" >&2
    cargo build --quiet -p gomon >&2
  fi
  echo "$gomon"
}
