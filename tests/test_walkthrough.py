"""docs/walkthrough.md runs: its Python blocks execute in order in a fresh process (four CPU
devices, as the page asks for), and each block's printed output equals the `text` block that
follows it on the page (numbers to 3 significant digits, where XLA:CPU's rounding may differ
between processors)."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "walkthrough.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")

# Runs the blocks given on stdin (a JSON list) in one namespace; prints each one's output.
_RUNNER = """
import contextlib, io, json, sys, traceback
blocks, outputs, namespace = json.load(sys.stdin), [], {"__name__": "__walkthrough__"}
for block in blocks:
  captured = io.StringIO()
  try:
    with contextlib.redirect_stdout(captured):
      exec(compile(block, "<walkthrough>", "exec"), namespace)
  except Exception:
    outputs.append(captured.getvalue() + traceback.format_exc())
    break
  outputs.append(captured.getvalue())
print("@@" + json.dumps(outputs))
"""


def page_blocks() -> list[tuple[str, str | None]]:
  """The page's Python blocks, each with the text block right after it (or None)."""
  text, pairs = PAGE.read_text(), []
  fences = list(FENCE.finditer(text))
  for i, fence in enumerate(fences):
    if fence.group(1) != "python":
      continue
    following = fences[i + 1] if i + 1 < len(fences) else None
    expected = None
    if following is not None and following.group(1) == "text" \
        and not text[fence.end():following.start()].strip():
      expected = following.group(2)
    pairs.append((fence.group(2), expected))
  return pairs


def _rounded(text: str) -> str:
  return NUMBER.sub(lambda m: f"{float(m.group()):.3g}", text).strip()


def test_the_page_has_code_and_outputs():
  pairs = page_blocks()
  assert len(pairs) >= 10 and sum(expected is not None for _, expected in pairs) >= 10


@pytest.mark.slow
def test_every_block_runs_and_prints_what_the_page_shows():
  pairs = page_blocks()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  env.pop("XLA_FLAGS", None)  # the page asks for its devices itself
  result = subprocess.run([sys.executable, "-c", _RUNNER], cwd=REPO_ROOT, env=env,
                          input=json.dumps([code for code, _ in pairs]), capture_output=True,
                          text=True, timeout=600)
  lines = [l for l in result.stdout.splitlines() if l.startswith("@@")]
  assert lines, result.stderr[-3000:]
  outputs = json.loads(lines[-1][2:])
  for index, ((code, expected), output) in enumerate(zip(pairs, outputs)):
    assert "Traceback (most recent call last)" not in output, f"block {index}:\n{code}\n{output}"
    if expected is not None:
      assert _rounded(output) == _rounded(expected), (
          f"block {index} printed\n{output}\nbut the page shows\n{expected}")
  assert len(outputs) == len(pairs)
