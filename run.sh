#!/usr/bin/env bash
# The one setup path of LightPool, used by the README's commands and by .ci/run.
#   bash run.sh demo    set up what is missing, then run the platform on a local chain
#   bash run.sh test    set up what is missing, then run the whole test suite on anvil
#   bash run.sh setup   only set up (idempotent: a second run installs nothing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
ANVIL_DIR=$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin
ANVIL_VERSION=1.7.1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            PYTHON=$(command -v "$candidate"); return
        fi
    done
    echo "LightPool needs Python >= 3.11 (with venv); none found on PATH" >&2; exit 1
}

setup_python() {
    need_python
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv with $PYTHON"
        "$PYTHON" -m venv .venv
    fi
    local want; want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat .venv/.lightpool-lock 2>/dev/null)" != "$want" ]; then
        say "installing the locked Python dependencies (requirements.lock)"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            -r requirements.lock
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
        echo "$want" > .venv/.lightpool-lock
    fi
}

setup_anvil() {
    if [ -x "$ANVIL_DIR/anvil" ] && "$ANVIL_DIR/anvil" --version | grep -q "$ANVIL_VERSION"; then
        return
    fi
    command -v npm >/dev/null || { echo "npm is needed to install anvil" >&2; exit 1; }
    say "installing anvil $ANVIL_VERSION into node_modules (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
}

setup_browser() {
    # Debian's chromium for the wallet end-to-end test (Playwright drives it).
    if command -v chromium >/dev/null; then return; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Debian's chromium for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing and cannot be installed here (needs root and apt-get)" >&2
    fi
}

setup() {
    setup_python
    setup_anvil
    export PATH="$ROOT/.venv/bin:$ANVIL_DIR:$PATH"
}

case "${1:-}" in
    setup)
        setup; setup_browser ;;
    demo)
        shift; setup
        exec lightpool demo "$@" ;;
    test)
        shift; setup; setup_browser
        # pytest exits 5 when it collects nothing: a suite that runs no test fails.
        exec ape test tests/ "$@" ;;
    *)
        echo "usage: bash run.sh demo|test|setup [args...]" >&2; exit 2 ;;
esac
