#!/usr/bin/env bash
# The test command: system packages, a Python environment, lint, format, types, the whole suite.
#
#   bash tests/run.sh [extra pytest arguments]
#
# Works on a fresh Debian machine (as root or with sudo, no stdin needed) and on a developer
# machine, where the apt step is skipped once the packages are installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

step() { printf '\n==> %s\n' "$*"; }

# Peers the integration tests run against (skopeo, umoci, the registry, oci-image-tool), the
# OCI JSON schemas, and jq.
APT_PACKAGES=(
    skopeo
    umoci
    docker-registry
    oci-image-tool
    golang-github-opencontainers-image-spec-dev
    jq
    gnupg
    xfsprogs  # mkfs.xfs: a loop-mounted XFS where tests see blobs cloned (--link-blobs)
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

in_venv() {
    "$1" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)'
}

# A Python that refuses pip installs (PEP 668: Debian's /usr/bin/python3) gets a venv.
externally_managed() {
    "$1" -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'
}

# -- Python: which interpreter, and whether it needs a virtualenv -------------------------------
PYTHON="${PYTHON:-python3}"
HAVE_PYTHON=1
command -v "$PYTHON" >/dev/null 2>&1 || HAVE_PYTHON=0

USE_VENV=0
if [ "$HAVE_PYTHON" -eq 0 ]; then
    USE_VENV=1  # Debian's python3, installed below, is externally managed
elif ! in_venv "$PYTHON" \
    && { externally_managed "$PYTHON" || ! "$PYTHON" -m pip --version >/dev/null 2>&1; }; then
    USE_VENV=1
fi

# -- System packages ----------------------------------------------------------------------------
step "Debian packages"
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if [ "$HAVE_PYTHON" -eq 0 ]; then
        missing+=(python3 python3-venv)
    # Debian's python3 can only make a venv with python3-venv (ensurepip) installed.
    elif [ "$USE_VENV" -eq 1 ] && [ ! -x .venv/bin/python ] \
        && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all installed: ${APT_PACKAGES[*]}"
    else
        echo "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update
        as_root apt-get install -y --no-install-recommends "${missing[@]}"
    fi
else
    echo "warning: not a Debian system; tests needing skopeo, umoci, docker-registry or" \
        "oci-image-tool are skipped if those are missing" >&2
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; install Python 3.10 or newer" >&2
    exit 1
fi

step "Python environment"
if [ "$USE_VENV" -eq 1 ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "creating the virtualenv $ROOT/.venv"
        "$PYTHON" -m venv .venv
    fi
    PYTHON="$ROOT/.venv/bin/python"
    export VIRTUAL_ENV="$ROOT/.venv"
    export PATH="$ROOT/.venv/bin:$PATH"
fi
"$PYTHON" -c 'import sys
if sys.version_info < (3, 10):
    sys.exit("error: imagetypes needs Python 3.10 or newer, this is " + sys.version.split()[0])'
echo "using $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

step "pip install -e '.[test]'"
"$PYTHON" -m pip install --disable-pip-version-check --quiet --editable '.[test]'

# The documentation site (mkdocs, material, mkdocstrings: the docs extra) and what runs the
# notebook in tests/integration/test_docs.py (nbclient, ipykernel, nbformat).
step "pip install -e '.[docs]' and the notebook runner"
"$PYTHON" -m pip install --disable-pip-version-check --quiet --editable '.[docs]' \
    'nbclient>=0.10' 'ipykernel>=6.29' 'nbformat>=5.10'

# The checks: each runs even when an earlier one failed, so one run shows every problem.
failed=()
check() {
    local name="$1"
    shift
    step "$name"
    local status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "FAILED: $name (exit $status)" >&2
        failed+=("$name")
    fi
    return 0
}

# Run the tools of that interpreter, whatever else is on PATH.
check "ruff check ." "$PYTHON" -m ruff check .
check "ruff format --check ." "$PYTHON" -m ruff format --check .
check "mypy (strict; files from pyproject.toml)" "$PYTHON" -m mypy
# The site must build with no warning (broken links, missing pages, bad docstrings), from
# local files only: no theme fonts or plugins that fetch anything.
SITE_DIR="$(mktemp -d)"
trap 'rm -rf "$SITE_DIR"' EXIT
check "mkdocs build --strict" env NO_MKDOCS_2_WARNING=1 \
    "$PYTHON" -m mkdocs build --strict --site-dir "$SITE_DIR"
# pytest exits 5 when it collected no tests: that is a failure too, never a silent pass.
check "pytest" "$PYTHON" -m pytest "$@"

if [ "${#failed[@]}" -ne 0 ]; then
    printf '\n==> FAILED: %s\n' "$(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" >&2
    exit 1
fi
step "all checks passed"
