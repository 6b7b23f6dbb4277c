"""Writing the test references that tools/ref_*.py compute (tests/data/*.json): one line per top-level entry, and per
item of a top-level list, so a regenerated file shows as a readable diff."""
from __future__ import annotations

import json
from pathlib import Path


def format_reference(reference: dict) -> str:
  lines = []
  for key, value in reference.items():
    if isinstance(value, list):
      items = ",\n".join(f"  {json.dumps(item, ensure_ascii=False)}" for item in value)
      lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
    else:
      lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
  return "{\n" + ",\n".join(lines) + "\n}\n"


def write_reference(reference: dict, out: Path) -> None:
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(format_reference(reference), encoding="utf-8")
