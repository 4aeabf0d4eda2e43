#!/usr/bin/env python3
"""Writes (or checks) the inputs/outputs tables of terraform/README.md.

terraform-docs ships through no package registry reachable here, so this does the part of its
job the README needs: a Requirements, an Inputs and an Outputs table between the
`<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->` markers, generated from `versions.tf`,
`variables.tf` and `outputs.tf` with the `hcl2` module of bc-python-hcl2 0.4.3, the version checkov
pins (installed by scripts/setup.sh). python-hcl2 installs a module of the same name that parses
into a different shape; this script does not work with it.

    tools/tfdocs.py            # rewrite the tables in README.md
    tools/tfdocs.py --check    # exit 1 (and show the diff) when README.md is out of date
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import hcl2

BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"


def one(value):
    """hcl2 wraps some attribute values in a one-element list; unwrap them."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def expr(value: str) -> str:
    """`${map(string)}` -> `map(string)`: the expression as written in the .tf file."""
    m = re.fullmatch(r"\$\{(.*)\}", value, flags=re.S)
    return m.group(1) if m else value


def text(value: str) -> str:
    """A quoted HCL string as the reader sees it: undo the escaping hcl2 leaves in place."""
    return value.replace('\\"', '"').replace("\\\\", "\\")


def hcl_literal(value) -> str:
    """A default value, written the way HCL writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if re.fullmatch(r"\$\{.*\}", value, flags=re.S):
            return expr(value)
        return json.dumps(text(value))
    if isinstance(value, list):
        return "[" + ", ".join(hcl_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {hcl_literal(v)}" for k, v in value.items()) + " }"
    return str(value)


def cell(value: str) -> str:
    """Markdown table cell: no raw pipes or newlines."""
    return value.replace("|", "\\|").replace("\n", " ")


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f)


def render(module: Path) -> str:
    versions = load(module / "versions.tf")
    variables = load(module / "variables.tf").get("variable", [])
    outputs = load(module / "outputs.tf").get("output", [])

    lines: list[str] = ["## Requirements", "", "| Name | Version |", "|------|---------|"]
    for block in versions.get("terraform", []):
        if "required_version" in block:
            lines.append(f"| terraform | `{one(block['required_version'])}` |")
        for providers in block.get("required_providers", []):
            for name, spec in providers.items():
                spec = one(spec)
                lines.append(f"| {name} (`{spec['source']}`) | `{spec['version']}` |")

    lines += ["", "## Inputs", "", "| Name | Description | Type | Default | Required |", "|------|-------------|------|---------|:--------:|"]
    for var in variables:
        ((name, body),) = var.items()
        description = text(one(body.get("description", "")))
        type_ = expr(one(body.get("type", "any")))
        has_default = "default" in body
        default = hcl_literal(one(body["default"])) if has_default else "n/a"
        if one(body.get("sensitive", False)) is True:
            description += " (sensitive)"
        lines.append(
            f"| <a name=\"input_{name}\"></a> [{name}](#input_{name}) | {cell(description)} "
            f"| `{cell(type_)}` | `{cell(default)}` | {'no' if has_default else 'yes'} |"
        )

    lines += ["", "## Outputs", "", "| Name | Description |", "|------|-------------|"]
    for out in outputs:
        ((name, body),) = out.items()
        description = text(one(body.get("description", "")))
        lines.append(f"| <a name=\"output_{name}\"></a> [{name}](#output_{name}) | {cell(description)} |")

    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when README.md is out of date")
    parser.add_argument("module", nargs="?", default=str(Path(__file__).resolve().parent.parent), help="module directory (default: terraform/)")
    args = parser.parse_args()

    module = Path(args.module)
    readme = module / "README.md"
    current = readme.read_text(encoding="utf-8")
    if BEGIN not in current or END not in current:
        print(f"{readme}: the {BEGIN} / {END} markers are missing", file=sys.stderr)
        return 1

    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{BEGIN}\n{render(module)}{END}{tail}"

    if wanted == current:
        return 0
    if args.check:
        diff = difflib.unified_diff(current.splitlines(True), wanted.splitlines(True), str(readme), f"{readme} (generated)")
        sys.stderr.writelines(diff)
        print(f"{readme} is out of date: run terraform/tools/tfdocs.py", file=sys.stderr)
        return 1
    readme.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
