"""The README's reference tables, generated from the contract and the settings (a test keeps them equal).

``python -m hy3d_tooling.docs`` prints them, to paste into README.md after a change.
"""

from __future__ import annotations

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
        allowed = "true / false" if p.triton_dtype == "BOOL" else f"[{p.minimum}, {p.maximum}]"
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
        ("limits.MAX_MESH_FACES", limits.MAX_MESH_FACES, "most faces `paint_pbr` accepts"),
        ("limits.MAX_MESH_VERTICES", limits.MAX_MESH_VERTICES, "most vertices `paint_pbr` accepts"),
        ("limits.MAX_TEXT_BYTES", limits.MAX_TEXT_BYTES, "longest `SHAPE_ENGINE` text, bytes"),
    )
    rows = ["| limit | value | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {value} | {meaning} |" for name, value, meaning in entries]
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    sys.stdout.write("\n\n".join((contract_table(), settings_table(), limits_table())) + "\n")
