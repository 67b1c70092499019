"""CLI promises: flags derived from the contract, errors on stderr with a non-zero status, nothing sent for bad
input, JSON on stdout. (Runs against real servers are in test_end_to_end.py.)"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hy3d_client.cli import EXIT_FAILURE, EXIT_USAGE, build_parser, flag_of, main, parameters_from_args
from hy3d_client.contract import PARAMETERS

from .conftest import free_ports
from .samples import encode_png, object_photo

CONSOLE_SCRIPT = Path(sys.executable).with_name("hy3d-client")
SAMPLE_VALUES = {"BOOL": False, "INT32": 64, "INT64": 7, "FP32": 2.5, "BYTES": "png"}


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "object.png"
    path.write_bytes(encode_png(object_photo(48)))
    return path


def run(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(argv, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


def test_every_contract_parameter_has_a_flag():
    parser = build_parser()
    for parameter in PARAMETERS:
        value = SAMPLE_VALUES[parameter.triton_dtype]
        if parameter.triton_dtype == "BOOL":
            argv = ["--no-" + parameter.key.replace("_", "-")]
        else:
            argv = [flag_of(parameter), str(value)]
        args = parser.parse_args(["generate", "x.png", *argv])
        assert parameters_from_args(args) == {parameter.key: value}


def test_unset_flags_send_nothing_and_the_spelled_out_flags_work_too():
    parser = build_parser()
    assert parameters_from_args(parser.parse_args(["generate", "x.png"])) == {}
    args = parser.parse_args(["generate", "x.png", "--num-inference-steps", "9", "--texture"])
    assert parameters_from_args(args) == {"num_inference_steps": 9, "texture": True}
    assert flag_of(next(p for p in PARAMETERS if p.key == "num_inference_steps")) == "--steps"


def test_help_shows_each_parameter_with_its_range_and_default(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["generate", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    for parameter in PARAMETERS:
        assert parameter.key.replace("_", "-") in text
        if parameter.choices:
            assert "{" + ",".join(parameter.choices) + "}" in text
            assert f"(default: {parameter.default})" in text
        elif parameter.triton_dtype != "BOOL":
            assert f"[{parameter.minimum}, {parameter.maximum}]" in text
            assert f"default {parameter.default}" in text


def test_an_out_of_range_flag_is_reported_by_its_flag_name_without_a_request(image_file, counting_listener):
    status, out, err = run(["generate", str(image_file), "--seed", "-3", "--url", counting_listener.url])
    assert status == EXIT_USAGE and out == ""
    assert err.startswith("hy3d-client: error: --seed: -3 is out of range")
    assert counting_listener.connections == 0


def test_a_non_numeric_flag_value_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["generate", "x.png", "--face-count", "many"])
    assert caught.value.code == EXIT_USAGE
    assert "--face-count: invalid int value: 'many'" in capsys.readouterr().err


def test_out_and_upload_are_mutually_exclusive(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["generate", "x.png", "--out", "a.glb", "--upload"])
    assert caught.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_missing_image_file_is_reported(tmp_path, counting_listener):
    status, _, err = run(["generate", str(tmp_path / "nope.png"), "--url", counting_listener.url])
    assert status == EXIT_USAGE and "IMAGE: cannot read" in err and "nope.png" in err
    assert counting_listener.connections == 0


def test_an_out_file_in_a_missing_folder_fails_before_the_request(image_file, tmp_path, counting_listener):
    out = tmp_path / "no-such-folder" / "result.glb"
    status, _, err = run(["generate", str(image_file), "--out", str(out), "--url", counting_listener.url])
    assert status == EXIT_USAGE and err.startswith("hy3d-client: error: --out: folder") and "does not exist" in err
    assert counting_listener.connections == 0


def test_upload_without_store_settings_fails_before_the_request(image_file, counting_listener):
    status, _, err = run(["generate", str(image_file), "--upload", "--url", counting_listener.url])
    assert status == EXIT_USAGE and "missing environment variable(s)" in err
    assert counting_listener.connections == 0


def test_an_unreachable_server_exits_with_failure_and_writes_no_file(image_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HY3D_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("HY3D_RETRY_INITIAL_DELAY_S", "0.01")
    (closed_port,) = free_ports(1)
    out = tmp_path / "result.glb"
    status, stdout, err = run(["generate", str(image_file), "--out", str(out), "--protocol", "http",
                               "--url", f"127.0.0.1:{closed_port}", "--timeout", "5"])
    assert status == EXIT_FAILURE and stdout == ""
    assert "Connection refused" in err and "gave up after 2 attempts" in err
    assert not out.exists()


def test_invalid_server_flags_are_named(image_file):
    status, _, err = run(["generate", str(image_file), "--url", "no-port-here"])
    assert status == EXIT_USAGE and err.startswith("hy3d-client: error: --url: expected HOST:PORT")
    status, _, err = run(["generate", str(image_file), "--timeout", "-1"])
    assert status == EXIT_USAGE and "--timeout: expected seconds" in err


def test_a_job_file_that_is_not_json_is_reported(tmp_path):
    job = tmp_path / "job.json"
    job.write_text("{not json")
    status, out, err = run(["job", str(job)])
    assert status == EXIT_USAGE and out == "" and "is not valid JSON" in err


def test_a_bad_job_prints_the_error_response_and_exits_with_failure(tmp_path, counting_listener):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"input": {"image": "!!", "seed": 1}}))
    status, out, err = run(["job", str(job), "--url", counting_listener.url])
    assert status == EXIT_FAILURE
    assert json.loads(out) == {"error": "image: not valid base64 (expected the standard alphabet A-Z a-z 0-9 + / "
                                        "with = padding)"}
    assert err.startswith("hy3d-client: error: image: not valid base64")
    assert counting_listener.connections == 0


def test_the_console_script_is_installed():
    completed = subprocess.run([str(CONSOLE_SCRIPT), "generate", "--help"], capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0 and "--octree-resolution" in completed.stdout
