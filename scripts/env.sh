# Shared set-up for scripts/demo and scripts/test: creates or updates the project's virtual
# environments. Sourced, not run. Idempotent: a stamp of pyproject.toml skips the install when
# nothing changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"          # Python >= 3.12: worker, AWS SDK, fake Sonic, tests
HOST_VENV="$ROOT/.venv-host" # Python 3.11, no AWS package: proves the host side never needs one

say() { printf '[sonic-bridge] %s\n' "$*" >&2; }

# First interpreter of at least the given minor version: PATH, then pyenv's versions folder.
find_python() {
    local minor="$1" exact="${2:-}" candidate
    local names=()
    if [ -n "$exact" ]; then names=("python3.$minor"); else
        for m in 12 13 14; do [ "$m" -ge "$minor" ] && names+=("python3.$m"); done
        names+=(python3)
    fi
    for candidate in "${names[@]}"; do
        if command -v "$candidate" >/dev/null 2>&1 && version_ok "$(command -v "$candidate")" "$minor" "$exact"; then
            command -v "$candidate"; return 0
        fi
    done
    local root=""
    if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; elif [ -d "$HOME/.pyenv" ]; then root="$HOME/.pyenv"; fi
    if [ -n "$root" ]; then
        # The newest patch release of the lowest fitting minor version: 3.12 is what the SDK was tested on.
        local m
        for m in $(seq "$minor" 20); do
            for candidate in $(ls -d "$root"/versions/3."$m".*/bin/python3 2>/dev/null | sort -rV); do
                if version_ok "$candidate" "$minor" "$exact"; then echo "$candidate"; return 0; fi
            done
            [ -n "$exact" ] && break
        done
    fi
    return 1
}

version_ok() {  # interpreter, minor, exact?
    local got
    got="$("$1" -c 'import sys; print(sys.version_info[1])' 2>/dev/null)" || return 1
    if [ -n "$3" ]; then [ "$got" -eq "$2" ]; else [ "$got" -ge "$2" ]; fi
}

# What the install depends on: the dependencies and the compiled hot path.
stamp_of() { cat "$ROOT/pyproject.toml" "$ROOT/hatch_build.py" "$ROOT/src/sonic_bridge/ipc/_hotpath.c" | sha256sum | cut -c1-16; }

ensure_venv() {  # venv dir, interpreter, extras
    local dir="$1" py="$2" extras="$3" stamp
    stamp="$(stamp_of)-$extras"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.sonic-stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
    say "setting up $dir with $("$py" --version 2>&1) (extras: $extras)"
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    local logfile="$dir/.sonic-install.log"
    if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]" >"$logfile" 2>&1; then
        grep -v "^WARNING: Location" "$logfile" >&2 || true
        say "installing the project into $dir failed (log above)"; exit 1
    fi
    "$dir/bin/python" -c "import sonic_bridge" || { say "sonic_bridge does not import in $dir"; exit 1; }
    echo "$stamp" > "$dir/.sonic-stamp"
}

ensure_main_env() {
    local py
    if ! py="$(find_python 12)"; then
        say "no Python >= 3.12 found on PATH or in pyenv's versions folder."
        say "Install one, e.g. 'pyenv install 3.12' or your distribution's python3.12 package, then run this again."
        exit 1
    fi
    ensure_venv "$VENV" "$py" "aws,fake,bench,dev"
}

ensure_host_env() {
    local py
    if ! py="$(find_python 11 exact)"; then
        say "no Python 3.11 found: the host-on-3.11 tests will be skipped (install python3.11 to run them)."
        return 0
    fi
    ensure_venv "$HOST_VENV" "$py" "fake,dev"
    export SONIC_BRIDGE_HOST_PYTHON="$HOST_VENV/bin/python"
}
