# Shared by scripts/serve and scripts/test: a virtualenv in .venv with the
# given requirements file installed (reinstalled only when the file changes).

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "jserver needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local requirements="$1" python stamp
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python)
    echo "Creating the virtualenv in .venv with $python"
    "$python" -m venv .venv || return 1
    .venv/bin/python -m pip install --quiet --upgrade pip || return 1
  fi
  stamp=".venv/.installed-$(basename "$requirements")-$(cat requirements*.txt | sha256sum | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    echo "Installing $requirements into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements" || return 1
    touch "$stamp"
  fi
}
