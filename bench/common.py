"""What every benchmark script shares: the machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"


def cpu_model() -> str:
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or "unknown CPU"
  match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
  return match.group(1).strip() if match else "unknown CPU"


def machine_line(*libraries: str) -> str:
  """CPU, cores, OS, Python and the versions of `libraries` (already importable), and today."""
  import importlib
  versions = "".join(f", {name} {importlib.import_module(name).__version__}"
                     for name in libraries)
  return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
          f"Python {platform.python_version()}{versions}; {datetime.date.today().isoformat()}")


def write_section(title: str, body: str, path: pathlib.Path = DOCS) -> None:
  """Replaces the generated block of section `## {title}` in docs/benchmarks.md.

  The block sits between `<!-- {title}: generated -->` and `<!-- {title}: end -->`; text of the
  section outside it (notes, tables written by hand) and other sections are kept. A missing
  file or section is created.
  """
  begin, end = f"<!-- {title}: generated -->", f"<!-- {title}: end -->"
  block = f"{begin}\n{body.rstrip()}\n{end}"
  text = path.read_text() if path.exists() else "# Benchmarks\n"
  if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
  elif f"\n## {title}\n" in text:
    start = text.index(f"\n## {title}\n") + len(f"\n## {title}\n")
    text = text[:start] + "\n" + block + "\n" + text[start:]
  else:
    text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
