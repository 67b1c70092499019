"""The README's reference tables, generated from the contract and the settings (a test keeps them equal).

``python -m hy3d_tooling.docs`` prints them; ``--write`` puts them into README.md between their markers.
"""

from __future__ import annotations

import re
from pathlib import Path

from hy3d_client import contract

from hy3d_serving import limits, settings

_KINDS = {"BOOL": "bool", "INT32": "int", "INT64": "int", "FP32": "float"}


def contract_table() -> str:
    """Markdown table of the ensemble's inputs and outputs."""
    rows = [
        "| tensor | JSON key | dtype | shape | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| `{contract.IMAGE_INPUT}` | `{contract.IMAGE_KEY}` | {contract.IMAGE_DTYPE} | [H, W, C] | required | "
        f"C in {{3, 4}}, sides {contract.MIN_IMAGE_SIDE}..{contract.MAX_IMAGE_SIDE} px, "
        f"at most {contract.MAX_IMAGE_PIXELS} px | the picture; with C = 4 alpha is the object mask |",
    ]
    for p in contract.PARAMETERS:
        default = str(p.default).lower() if p.triton_dtype == "BOOL" else str(p.default)
        if p.triton_dtype == "BOOL":
            allowed = "true / false"
        else:
            allowed = " / ".join(p.choices) if p.choices else f"[{p.minimum}, {p.maximum}]"
        rows.append(f"| `{p.name}` | `{p.key}` | {p.triton_dtype} | [1] | {default} | {allowed} | {p.description} |")
    outputs = (
        (contract.GLB_OUTPUT, "BYTES", "one binary glTF 2.0 asset (.glb)"),
        (contract.TEXTURED_OUTPUT, "BOOL", "whether the GLB carries PBR textures"),
        (contract.SEED_OUTPUT, "INT64", "the seed the request ran with"),
        (contract.ENGINE_OUTPUT, "BYTES", "which engines made it, e.g. `shape=builtin-silhouette;paint=none`"),
    )
    for name, dtype, meaning in outputs:
        rows.append(f"| `{name}` (output) | | {dtype} | [1] | | | {meaning} |")
    return "\n".join(rows)


def settings_table() -> str:
    """Markdown table of every environment variable and config.pbtxt parameter, with its default."""
    rows = ["| environment | config.pbtxt parameter | default | meaning |", "| --- | --- | --- | --- |"]
    for s in settings.SETTINGS:
        parameter = f"`{s.parameter}`" if s.parameter else ""
        rows.append(f"| `{s.env}` | {parameter} | {s.default} | {s.description} |")
    return "\n".join(rows)


def limits_table() -> str:
    """Markdown table of the named limits enforced on requests and between stages."""
    entries = (
        ("contract.MIN_IMAGE_SIDE", contract.MIN_IMAGE_SIDE, "smallest image side, px"),
        ("contract.MAX_IMAGE_SIDE", contract.MAX_IMAGE_SIDE, "largest image side, px"),
        ("contract.MAX_IMAGE_PIXELS", contract.MAX_IMAGE_PIXELS, "largest image area, px"),
        ("contract.MAX_IMAGE_BYTES", contract.MAX_IMAGE_BYTES, "largest encoded image (client side), bytes"),
        ("contract.MAX_MESH_FILE_BYTES", contract.MAX_MESH_FILE_BYTES, "largest `MESH` file of `hy3d_texture`, bytes"),
        ("contract.MAX_MESH_FILE_FACES", contract.MAX_MESH_FILE_FACES,
         "most triangles in a `MESH` file (more than `FACE_COUNT` are reduced)"),
        ("contract.MAX_MESH_FILE_VERTICES", contract.MAX_MESH_FILE_VERTICES, "most vertices in a `MESH` file"),
        ("limits.MAX_MESH_FACES", limits.MAX_MESH_FACES, "most faces `paint_pbr` accepts"),
        ("limits.MAX_MESH_VERTICES", limits.MAX_MESH_VERTICES, "most vertices `paint_pbr` accepts"),
        ("limits.MAX_TEXT_BYTES", limits.MAX_TEXT_BYTES, "longest `SHAPE_ENGINE` text, bytes"),
    )
    rows = ["| limit | value | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {value} | {meaning} |" for name, value, meaning in entries]
    return "\n".join(rows)


#: Marker name in README.md of each generated table.
TABLES = {"contract-table": contract_table, "settings-table": settings_table, "limits-table": limits_table}


def write_tables(readme: Path) -> None:
    """Replace each generated table of ``readme`` (between ``<!-- NAME:start -->`` and ``:end``) in place."""
    text = readme.read_text()
    for marker, table in TABLES.items():
        pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{readme} lacks the {marker} markers")
        text = pattern.sub(lambda match, table=table: match.group(1) + table() + "\n" + match.group(2), text)
    readme.write_text(text)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_tables(Path(__file__).resolve().parents[2] / "README.md")
    else:
        sys.stdout.write("\n\n".join(table() for table in TABLES.values()) + "\n")
