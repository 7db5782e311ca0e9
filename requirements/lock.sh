#!/usr/bin/env bash
# Regenerates the locked installs from pyproject.toml, in a throwaway environment, against the
# public index alone (no pip or uv configuration of this machine is read): `make lock`.
#   cpu.txt      what `make quickstart` installs (Linux and macOS CPU hosts, Python >= 3.11)
#   cpu-dev.txt  what `make test` and CI install: + the test, demo, onnx and gcs extras, with
#                onnxruntime at the oldest release the onnx extra admits (what the tests load)
#   cuda12.txt   a Linux x86-64 GPU host, Python 3.11: jax[cuda12] and the gcs extra
# The torch extra stays outside: its CPU build is platform-specific (`make test` installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
PIP_CONFIG_FILE=/dev/null "$tools/venv/bin/pip" install --quiet --index-url https://pypi.org/simple \
  "uv==0.13.9"
compile() {
  "$tools/venv/bin/uv" pip compile --no-config --index-url https://pypi.org/simple \
    --generate-hashes --quiet --no-header "$@"
}
oldest_onnxruntime="$(sed -n 's/.*"onnxruntime>=\([0-9.]*\)".*/\1/p' pyproject.toml)"
echo "onnxruntime==$oldest_onnxruntime" > "$tools/oldest.txt"
echo "jax[cuda12]" > "$tools/cuda12.in"
compile pyproject.toml --extra test --extra demo --extra onnx --extra gcs --universal \
  --python-version 3.11 --override "$tools/oldest.txt" -o requirements/cpu-dev.txt
compile pyproject.toml --universal --python-version 3.11 -c requirements/cpu-dev.txt \
  -o requirements/cpu.txt
compile pyproject.toml "$tools/cuda12.in" --extra gcs --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -c requirements/cpu-dev.txt -o requirements/cuda12.txt
echo "requirements/: $(grep -c '==' requirements/cpu.txt) pins (cpu), \
$(grep -c '==' requirements/cpu-dev.txt) (cpu-dev), $(grep -c '==' requirements/cuda12.txt) (cuda12)"
