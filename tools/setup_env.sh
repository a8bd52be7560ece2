# Sourced by the other shell scripts: make .venv on first use and keep it in step with the
# requirements files (a no-op, under a second, when nothing changed). Sets $PYTHON.
# Override the interpreter that builds the venv with PYTHON_FOR_VENV=python3.12 etc.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${VENV_DIR:-$_root/.venv}"
_stamp="$_venv/.requirements.sha256"
_want="$(cat "$_root/requirements.txt" "$_root/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$_venv/bin/python" ]; then
    echo "setting up the Python environment in $_venv (first run only; PyTorch is large)..." >&2
    "${PYTHON_FOR_VENV:-python3}" -m venv "$_venv" || return 1
fi
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$_root/requirements-dev.txt" || return 1
    echo "$_want" > "$_stamp"
fi
PYTHON="$_venv/bin/python"
