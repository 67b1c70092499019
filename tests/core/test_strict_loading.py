"""Strict loading (``hy3dcore.loading``): exactly the module's tensors or a ``WeightsError`` naming the file and
the key; optional key prefixes; key maps with renamed and stacked tensors; casting; offline file reading."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from hy3dcore.loading import (
    KeyMap,
    WeightsError,
    assign_state_dict,
    checkpoint_shapes,
    find_weights,
    load_weights,
    read_json,
    select_entry,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 6)
        self.gate = nn.Linear(6, 3)
        self.up = nn.Linear(6, 3)
        self.register_buffer("steps", torch.zeros(2, dtype=torch.int64))


#: The file stores ``gate`` and ``up`` stacked as ``both`` and ``first`` as ``input``.
STACKED = KeyMap(rules=(("input.", ("first.",)), ("both.", ("gate.", "up."))))


def meta_net() -> Net:
    with torch.device("meta"):
        return Net()


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(value.shape, generator=generator) for key, value in Net().state_dict().items()}
    state["steps"] = torch.tensor([3, 4])
    return state


def test_a_matching_state_dict_is_assigned_without_copies_and_the_dict_is_emptied():
    state = weights()
    expected = {key: value.clone() for key, value in state.items()}
    net = assign_state_dict(meta_net(), state, "net.pt")
    assert state == {}
    for key, value in net.state_dict().items():
        assert torch.equal(value, expected[key])


def test_floating_tensors_are_cast_and_integer_buffers_keep_their_dtype():
    net = assign_state_dict(meta_net(), weights(), "net.pt", dtype=torch.float16, device="cpu")
    assert net.first.weight.dtype == torch.float16 and net.steps.dtype == torch.int64


def test_a_missing_key_an_unexpected_key_and_a_shape_mismatch_are_all_named():
    state = weights()
    del state["gate.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["up.weight"] = torch.zeros(3, 5)
    with pytest.raises(WeightsError, match=r"^net\.pt: weights do not match the model \(7 keys in the file, 7 expected\): "
                                           r"1 missing key\(s\), first 'gate\.bias'; 1 unexpected key\(s\), first "
                                           r"'extra\.weight'; 1 shape mismatch\(es\), first 'up\.weight': file has "
                                           r"\[3, 5\], model expects \[3, 6\]$"):
        assign_state_dict(meta_net(), state, "net.pt")


def test_nothing_is_assigned_when_the_check_fails():
    net = meta_net()
    state = weights()
    del state["first.bias"]
    with pytest.raises(WeightsError):
        assign_state_dict(net, state, "net.pt")
    assert net.first.weight.is_meta and "first.weight" in state


def test_an_integer_tensor_where_the_module_has_floats_is_rejected():
    state = weights()
    state["first.bias"] = torch.zeros(6, dtype=torch.int32)
    with pytest.raises(WeightsError, match=r"net\.pt: tensor 'first\.bias' has dtype torch\.int32; a floating dtype"):
        assign_state_dict(meta_net(), state, "net.pt")


def test_an_entry_that_is_not_a_tensor_is_rejected():
    state = weights()
    state["first.bias"] = [0.0] * 6
    with pytest.raises(WeightsError, match=r"entry 'first\.bias' is a list, not a tensor"):
        assign_state_dict(meta_net(), state, "net.pt")


def test_keys_under_ignored_prefixes_may_be_present_or_absent():
    state = weights()
    state["encoder.weight"] = torch.zeros(2)
    assign_state_dict(meta_net(), state, "net.pt", ignore_prefixes=("encoder.",))
    assign_state_dict(meta_net(), weights(), "net.pt", ignore_prefixes=("encoder.",))


def test_a_key_map_reads_renamed_and_stacked_tensors_under_the_files_names():
    state = weights()
    file_state = {"input.weight": state["first.weight"], "input.bias": state["first.bias"],
                  "both.weight": torch.cat([state["gate.weight"], state["up.weight"]]),
                  "both.bias": torch.cat([state["gate.bias"], state["up.bias"]]), "steps": state["steps"]}
    assert checkpoint_shapes(meta_net(), STACKED) == {key: tuple(value.shape) for key, value in file_state.items()}
    net = assign_state_dict(meta_net(), dict(file_state), "net.pt", key_map=STACKED)
    assert torch.equal(net.up.weight, state["up.weight"]) and torch.equal(net.gate.bias, state["gate.bias"])
    assert torch.equal(net.first.weight, state["first.weight"])


def test_errors_through_a_key_map_use_the_files_names():
    state = {key: torch.zeros(shape) for key, shape in checkpoint_shapes(meta_net(), STACKED).items()}
    state["both.weight"] = torch.zeros(5, 6)
    with pytest.raises(WeightsError, match=r"first 'both\.weight': file has \[5, 6\], model expects \[6, 6\]"):
        assign_state_dict(meta_net(), state, "net.pt", key_map=STACKED)
    state = {key: torch.zeros(shape) for key, shape in checkpoint_shapes(meta_net(), STACKED).items()}
    state["first.weight"] = state.pop("input.weight")
    with pytest.raises(WeightsError, match=r"first 'input\.weight'; 1 unexpected key\(s\), first 'first\.weight'"):
        assign_state_dict(meta_net(), state, "net.pt", key_map=STACKED)


def test_safetensors_and_torch_files_are_read_and_bad_files_are_named(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    torch.save({"a": torch.ones(2)}, tmp_path / "w.bin")
    assert torch.equal(load_weights(tmp_path / "w.safetensors")["a"], torch.ones(2))
    assert torch.equal(load_weights(tmp_path / "w.bin")["a"], torch.ones(2))
    with pytest.raises(WeightsError, match=r"missing\.bin: file not found"):
        load_weights(tmp_path / "missing.bin")
    (tmp_path / "corrupt.bin").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"corrupt\.bin: cannot read weights"):
        load_weights(tmp_path / "corrupt.bin")
    torch.save([1, 2], tmp_path / "list.bin")
    with pytest.raises(WeightsError, match=r"list\.bin: expected a mapping of tensors, got list"):
        load_weights(tmp_path / "list.bin")


def test_pickled_code_is_refused(tmp_path):
    (tmp_path / "code.bin").write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(WeightsError, match=r"code\.bin: cannot read weights"):
        load_weights(tmp_path / "code.bin")


def test_folder_helpers_name_what_is_missing(tmp_path):
    with pytest.raises(WeightsError, match="no weights file; expected one of diffusion_pytorch_model.safetensors"):
        find_weights(tmp_path)
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"")
    assert find_weights(tmp_path).name == "diffusion_pytorch_model.bin"
    with pytest.raises(WeightsError, match=r"config\.json: file not found"):
        read_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(WeightsError, match="expected a JSON object, got list"):
        read_json(tmp_path / "config.json")
    with pytest.raises(WeightsError, match="expected the state dict under key 'params_ema'; found params"):
        select_entry({"params": {}}, "params_ema", "x.pth")


def test_the_error_type_is_a_value_error_importable_without_torch():
    assert issubclass(WeightsError, ValueError)
    code = "import sys, hy3dcore.loading, hy3dcore.layout; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
