"""``hy3d-client``: generate a GLB from an image, or run a worker job, from the command line.

    hy3d-client generate chair.png --out chair.glb --seed 7 --no-texture
    hy3d-client generate chair.png --upload
    hy3d-client texture chair.obj chair.png --out chair.glb --texture-format png
    hy3d-client job job.json

The parameter flags are derived from the contract's parameter table. Results are printed as JSON on
stdout; errors go to stderr with a non-zero exit status (2: bad input or settings, 1: the server or
the store failed, 130: interrupted).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .contract import (
    PARAMETERS,
    PARAMETERS_BY_NAME,
    TEXTURE_MODEL_PARAMETERS,
    ContractError,
    Parameter,
    validate_parameters,
)
from .errors import ConfigurationError, Hy3DError
from .images import load_image
from .meshes import load_mesh_file
from .progress import ProgressDisplay, Spinner, default_mode
from .r2 import R2Uploader
from .redaction import redact
from .request import GenerationResult, InferenceRequest, TextureRequest
from .sdk import Hy3DClient
from .settings import DEFAULT_TRITON_URLS, PROTOCOLS, TRITON_PROTOCOL_ENV, TRITON_TIMEOUT_ENV, TRITON_URL_ENV
from .worker import handle, unwrap_job

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Shorter flags for parameters with long keys; the flag spelled after the key works too.
FLAG_ALIASES = {"num_inference_steps": "--steps"}
#: Suffix of the default output file (next to the current directory, named after the image).
GLB_SUFFIX = ".glb"
#: Accepted in place of a job file to read the job from stdin.
STDIN_MARKER = "-"


def flag_of(parameter: Parameter) -> str:
    """The command-line flag of ``parameter`` (``--steps`` for ``num_inference_steps``)."""
    return FLAG_ALIASES.get(parameter.key, "--" + parameter.key.replace("_", "-"))


def add_parameter_flags(parser: argparse.ArgumentParser, parameters: Sequence[Parameter] = PARAMETERS) -> None:
    """One flag per contract parameter (of ``parameters``); unset flags stay ``None`` (the default applies)."""
    group = parser.add_argument_group("generation parameters (defaults from the request contract)")
    for parameter in parameters:
        long_flag = "--" + parameter.key.replace("_", "-")
        if parameter.triton_dtype == "BOOL":
            group.add_argument(
                long_flag, dest=parameter.key, action=argparse.BooleanOptionalAction, default=None,
                help=f"{parameter.description} (default: {'on' if parameter.default else 'off'})",
            )
            continue
        if parameter.choices:
            group.add_argument(
                long_flag, dest=parameter.key, choices=parameter.choices, default=None,
                help=f"{parameter.description} (default: {parameter.default})",
            )
            continue
        is_integer = parameter.triton_dtype.startswith("INT")
        names = [flag_of(parameter)] + ([long_flag] if flag_of(parameter) != long_flag else [])
        group.add_argument(
            *names, dest=parameter.key, type=int if is_integer else float, default=None,
            metavar="N" if is_integer else "X",
            help=f"{parameter.description} {parameter.allowed[0].upper()}{parameter.allowed[1:]}; default {parameter.default}.",
        )


def parameters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given on the command line (``{key: value}``), unset ones left out."""
    return {p.key: getattr(args, p.key) for p in PARAMETERS if getattr(args, p.key, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    """The ``hy3d-client`` argument parser."""
    parser = argparse.ArgumentParser(prog="hy3d-client", description="Image-to-3D with Hunyuan3D-2.1 on Triton.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a GLB from an image", description=(
        "Generate a GLB from IMAGE and write it to a file (default: the image's name with .glb, in the "
        "current directory) or upload it to R2. Prints a JSON summary on stdout."))
    generate.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, WebP, ...)")
    destination = generate.add_mutually_exclusive_group()
    destination.add_argument("--out", metavar="FILE.glb", type=Path, help="where to write the GLB")
    destination.add_argument("--upload", action="store_true",
                             help="upload to R2 (CF_R2_* variables) and print a presigned download URL")
    add_parameter_flags(generate)
    _add_server_flags(generate)
    _add_progress_flags(generate)

    texture = commands.add_parser("texture", help="texture an existing mesh after an image", description=(
        "Paint PBR textures on MESH (a GLB, OBJ or PLY file; +Y up, front towards +Z) after IMAGE and write "
        "the GLB to a file (default: the mesh's name with .glb, in the current directory) or upload it to "
        "R2. The mesh is centred and scaled to the shape stage's bounds, and reduced only if it has more "
        "faces than --face-count. Prints a JSON summary on stdout."))
    texture.add_argument("mesh", metavar="MESH", help="mesh file (GLB, OBJ or PLY)")
    texture.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, WebP, ...)")
    texture_destination = texture.add_mutually_exclusive_group()
    texture_destination.add_argument("--out", metavar="FILE.glb", type=Path, help="where to write the GLB")
    texture_destination.add_argument("--upload", action="store_true",
                                     help="upload to R2 (CF_R2_* variables) and print a presigned download URL")
    add_parameter_flags(texture, [PARAMETERS_BY_NAME[name] for name in TEXTURE_MODEL_PARAMETERS])
    _add_server_flags(texture)

    job = commands.add_parser("job", help="run a worker job (JSON) and print the worker's response", description=(
        "Run a serverless-worker job: JOB.json holds {\"image\": <base64>, ...} (or {\"input\": {...}}); "
        "the GLB is uploaded to R2 and the response JSON printed on stdout."))
    job.add_argument("job_file", metavar="JOB.json", help=f"job file, or {STDIN_MARKER} for stdin")
    _add_server_flags(job)
    _add_progress_flags(job)
    return parser


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--url", metavar="HOST:PORT",
                       help=f"Triton address (default: ${TRITON_URL_ENV}, else {DEFAULT_TRITON_URLS['grpc']} "
                            f"for grpc, {DEFAULT_TRITON_URLS['http']} for http)")
    group.add_argument("--protocol", choices=PROTOCOLS, help=f"default: ${TRITON_PROTOCOL_ENV}, else grpc")
    group.add_argument("--timeout", metavar="S", type=float, dest="timeout_s",
                       help=f"seconds per attempt (default: ${TRITON_TIMEOUT_ENV}, else 600)")


def _add_progress_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=(
        "no progress display on stderr (default: a progress bar with the phase, percent, elapsed time and "
        "ETA on a terminal, plain lines otherwise; live progress needs gRPC)"))


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; return the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "generate":
            return _generate(args, stdout, stderr)
        if args.command == "texture":
            return _texture(args, stdout, stderr)
        return _run_job(args, stdout, stderr)
    except (ContractError, ConfigurationError) as error:
        _fail(stderr, _as_flag_error(error))
        return EXIT_USAGE
    except Hy3DError as error:
        _fail(stderr, str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _fail(stderr, "interrupted (a streamed request was cancelled on the server)")
        return EXIT_INTERRUPTED


def _generate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    # Everything that can be checked is checked before the (long) request is sent.
    client, uploader, out = _client_and_destination(args, Path(args.image))
    parameters = parameters_from_args(args)
    validate_parameters(parameters)
    request = InferenceRequest.build(load_image(Path(args.image), field="IMAGE"), parameters)
    uid = str(uuid.uuid4())
    result = _send_showing_progress(client, request, uid, args, stderr)
    return _deliver(result, uid, uploader, out, stdout, stderr)


def _texture(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    # As for generate: everything that can be checked is checked before the request is sent.
    client, uploader, out = _client_and_destination(args, Path(args.mesh))
    parameters = parameters_from_args(args)
    validate_parameters(parameters, names=TEXTURE_MODEL_PARAMETERS)
    mesh = load_mesh_file(Path(args.mesh), field="MESH")
    request = TextureRequest.build(mesh, load_image(Path(args.image), field="IMAGE"), parameters)
    uid = str(uuid.uuid4())
    with Spinner(f"texturing on {client.settings.url}", stderr):
        result = client.send_texture(request, request_id=uid)
    return _deliver(result, uid, uploader, out, stdout, stderr)


def _client_and_destination(args: argparse.Namespace, source: Path) -> tuple[Hy3DClient, R2Uploader | None, Path]:
    """The client, the uploader (``--upload``) and the output path (``--out``, else ``<source stem>.glb``);
    raises ``ConfigurationError`` for missing upload settings or an ``--out`` folder that does not exist."""
    client = Hy3DClient(args.url, args.protocol, timeout_s=args.timeout_s)
    uploader = R2Uploader.from_env(retry=client.retry) if args.upload else None
    out = args.out or Path(source.stem + GLB_SUFFIX)
    if uploader is None and not out.parent.is_dir():
        raise ConfigurationError("--out", f"folder {out.parent} does not exist")
    return client, uploader, out


def _deliver(result: GenerationResult, uid: str, uploader: R2Uploader | None, out: Path, stdout: TextIO,
             stderr: TextIO) -> int:
    """Upload the GLB or write it to ``out``; print the JSON summary."""
    if uploader is not None:
        with Spinner("uploading", stderr):
            uploaded = uploader.upload_glb(result.glb, uid)
        summary: dict[str, Any] = {"download_url": uploaded.download_url, "textured": result.textured,
                                   "seed": result.seed, "uid": uid}
    else:
        try:
            out.write_bytes(result.glb)
        except OSError as error:
            _fail(stderr, f"--out: cannot write {out}: {error.strerror or error}")
            return EXIT_FAILURE
        summary = {"path": str(out), "bytes": len(result.glb), "textured": result.textured,
                   "seed": result.seed, "engine": result.engine, "uid": uid}
    stdout.write(json.dumps(summary) + "\n")
    return EXIT_OK


def _send_showing_progress(client: Hy3DClient, request: InferenceRequest, uid: str, args: argparse.Namespace,
                           stderr: TextIO) -> GenerationResult:
    """Send ``request``; over gRPC it streams from hy3d_stream and the display shows its progress (Ctrl-C
    cancels it on the server); over HTTP the plain ensemble runs and the display shows the elapsed time."""
    streamed = client.settings.protocol == "grpc"
    with ProgressDisplay(f"generating on {client.settings.url}", stderr, mode=default_mode(stderr, args.quiet),
                         determinate=streamed) as display:
        return client.send(request, request_id=uid, progress=display.update if streamed else None)


def _run_job(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    source = "stdin" if args.job_file == STDIN_MARKER else args.job_file
    try:
        text = sys.stdin.read() if args.job_file == STDIN_MARKER else Path(args.job_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _fail(stderr, f"JOB.json: cannot read {source}: {getattr(error, 'strerror', None) or error}")
        return EXIT_USAGE
    try:
        job = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(stderr, f"JOB.json: {source} is not valid JSON: {error}")
        return EXIT_USAGE
    client = Hy3DClient(args.url, args.protocol, timeout_s=args.timeout_s)
    streamed = client.settings.protocol == "grpc"
    with ProgressDisplay(f"running job on {client.settings.url}", stderr, mode=default_mode(stderr, args.quiet),
                         determinate=streamed) as display:
        response = handle(unwrap_job(job), client=client, progress=display.update if streamed else None)
    stdout.write(json.dumps(response) + "\n")
    if "error" in response:
        _fail(stderr, response["error"])
        return EXIT_FAILURE
    return EXIT_OK


def _as_flag_error(error: ContractError | ConfigurationError) -> str:
    """Name the command-line flag instead of the contract key where there is one."""
    if isinstance(error, ContractError):
        for parameter in PARAMETERS:
            if error.field == parameter.key:
                return str(error).replace(parameter.key, flag_of(parameter), 1)
    if isinstance(error, ConfigurationError) and error.setting in ("url", "protocol", "timeout_s"):
        return f"--{error.setting.removesuffix('_s')}: {error.problem}"
    return str(error)


def _fail(stderr: TextIO, message: str) -> None:
    stderr.write(f"hy3d-client: error: {redact(message)}\n")
    stderr.flush()
