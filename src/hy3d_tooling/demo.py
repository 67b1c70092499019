"""``scripts/demo``: image -> GLB through a real tritonserver, in one command.

Starts the model repository on free loopback ports (unless ``--url`` names a running server), sends
the image to ``hy3d_ensemble``, writes the GLB and prints its path on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hy3d_client import contract
from hy3d_client.errors import Hy3DError
from hy3d_client.request import GenerationResult
from hy3d_client.sdk import Hy3DClient

from .server_process import LAUNCHER_COMMAND, ServeProcess, ServerStartError

logger = logging.getLogger("hy3d_tooling.demo")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_IMAGE = REPO_ROOT / "examples" / "mug.png"
OUTPUT_DIR = REPO_ROOT / "out"
PROTOCOLS = ("http", "grpc")
#: Seconds the demo waits for the GLB (a default-parameter request on a CPU takes a while).
REQUEST_TIMEOUT_S = 1800
#: Exit status when the image or a parameter is refused.
EXIT_BAD_INPUT = 2
#: Exit status when the server could not start or the request failed.
EXIT_FAILED = 1


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=EXAMPLE_IMAGE, help="input PNG/JPEG (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="GLB to write (default: out/<image name>.glb)")
    parser.add_argument("--url", help="use the server at HOST:PORT instead of starting one")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    for parameter in contract.PARAMETERS:
        flag = "--" + parameter.key.replace("_", "-")
        if parameter.triton_dtype == "BOOL":
            parser.add_argument(flag, dest=parameter.key, action=argparse.BooleanOptionalAction,
                                help=f"{parameter.description} (default: {parameter.default})")
        elif parameter.choices:
            parser.add_argument(flag, dest=parameter.key, choices=parameter.choices,
                                help=f"{parameter.description} (default: {parameter.default})")
        else:
            kind = int if parameter.triton_dtype.startswith("INT") else float
            parser.add_argument(flag, dest=parameter.key, type=kind,
                                help=f"{parameter.description} {parameter.allowed} (default: {parameter.default})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0, or :data:`EXIT_BAD_INPUT` / :data:`EXIT_FAILED`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo %(levelname)s %(message)s")
    args = _arguments(argv)
    parameters = {p.key: getattr(args, p.key) for p in contract.PARAMETERS if getattr(args, p.key) is not None}
    output = args.output or OUTPUT_DIR / f"{args.image.stem}.glb"
    try:
        contract.validate_parameters(parameters)  # before starting anything
        if not args.image.is_file():
            raise contract.ContractError(contract.IMAGE_KEY, f"{args.image} is not a file")
        if args.url:
            result = _generate(args.url, args.image, parameters, args.protocol)
        else:
            log_path = OUTPUT_DIR / "demo-server.log"
            logger.info("starting tritonserver with model_repository/ (log: %s)", log_path)
            with ServeProcess(LAUNCHER_COMMAND, log_path) as server:
                url = server.http_url if args.protocol == "http" else server.grpc_url
                result = _generate(url, args.image, parameters, args.protocol)
    except contract.ContractError as error:
        logger.error("%s", error)
        return EXIT_BAD_INPUT
    except (Hy3DError, ServerStartError) as error:
        logger.error("%s", error)
        return EXIT_FAILED
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(result.glb)
    logger.info("engine %s, textured %s, seed %d, %d bytes", result.engine, result.textured, result.seed,
                len(result.glb))
    print(output.resolve())  # the one line of stdout: where the GLB is
    return 0


def _generate(url: str, image: Path, parameters: dict[str, object], protocol: str) -> GenerationResult:
    logger.info("sending %s to %s at %s over %s, parameters %s", image, contract.ENSEMBLE_MODEL, url, protocol,
                parameters or "defaults")
    start = time.perf_counter()
    client = Hy3DClient(url, protocol, timeout_s=REQUEST_TIMEOUT_S)
    result = client.generate_result(image, request_id="demo", **parameters)
    logger.info("answered in %.1f s", time.perf_counter() - start)
    return result


if __name__ == "__main__":
    sys.exit(main())
