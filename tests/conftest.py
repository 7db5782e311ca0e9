"""Shared test settings: CPU only, fast, deterministic."""

import os
import pathlib
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The real CMP facades live beside the checkout in CI; a user's fresh clone does not have them.
REAL_FACADES = REPO_ROOT.parent / "shared" / "data" / "facades"

if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))
