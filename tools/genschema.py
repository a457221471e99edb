"""Regenerate (or check) every file derived from the config schema.

The schema is declared once, in ``src/space_dra/schema.py`` (NamespaceConfig) and
``src/space_dra/schema_values.py`` (the chart's values). From it come the chart's
``values.yaml`` and ``values.schema.json``, the admission policy's CEL checks, the
configuration reference and the README's NamespaceConfig example. ``--check``
regenerates in memory and fails when a committed file differs, so an edit to one
copy without ``make schema`` cannot land.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from space_dra import schema_cel, schema_doc, schema_json  # noqa: E402

CHART = REPO / "deployments" / "helm" / "space-dra-driver"
README = REPO / "README.md"


def outputs() -> dict[Path, Callable[[str], str]]:
    """Each generated file -> a function from its current text to the text it should have."""
    return {
        CHART / "values.yaml": lambda _: schema_json.values_yaml_text(),
        CHART / "values.schema.json": lambda _: schema_json.values_schema_text(),
        CHART / "templates" / "_namespaceconfig.tpl": lambda _: schema_cel.template_text(),
        REPO / "docs" / "configuration.md": lambda _: schema_doc.reference_text(),
        # Only the block between the markers is generated.
        README: schema_doc.splice_readme,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, render in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        wanted = render(current)
        if wanted == current:
            continue
        stale.append(path.relative_to(REPO))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        print("stale generated files (run `make schema`):", *stale, sep="\n  ")
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
