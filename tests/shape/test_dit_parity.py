"""Vector b: one DiT forward (time token, latent embedding, every block, MoE routing, output)."""

from __future__ import annotations

import copy

import pytest
import torch
from shape_testdata import max_abs, tensor, tiny_pipeline, vector

TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def recorded():
    """Run the DiT on the vector's inputs with hooks on the embedders, blocks and MoE layers."""
    model = tiny_pipeline().model
    captured: dict[str, list] = {"blocks": [], "moe_inputs": []}
    handles = [
        model.t_embedder.register_forward_hook(lambda m, i, o: captured.__setitem__("t_emb", o)),
        model.x_embedder.register_forward_hook(lambda m, i, o: captured.__setitem__("x_emb", o)),
    ]
    for block in model.blocks:
        handles.append(block.register_forward_hook(lambda m, i, o: captured["blocks"].append(o)))
        if block.moe is not None:
            handles.append(block.moe.register_forward_hook(lambda m, i, o: captured["moe_inputs"].append((m, i[0]))))
    try:
        with torch.inference_mode():
            captured["out"] = model(tensor("b_dit_forward", "x"), tensor("b_dit_forward", "t"),
                                    {"main": tensor("b_dit_forward", "cond")})
    finally:
        for handle in handles:
            handle.remove()
    return captured


def test_output_velocity_matches(recorded):
    assert max_abs(recorded["out"], vector("b_dit_forward")["out"]) <= TOLERANCE


def test_time_token_and_latent_embedding_match(recorded):
    b = vector("b_dit_forward")
    assert max_abs(recorded["t_emb"], b["t_emb"]) <= TOLERANCE
    assert max_abs(recorded["x_emb"], b["x_emb"]) <= TOLERANCE


@pytest.mark.parametrize("block", range(5))
def test_every_block_output_matches(recorded, block):
    assert max_abs(recorded["blocks"][block], vector("b_dit_forward")["block_out"][block]) <= TOLERANCE


def test_moe_layers_are_the_last_blocks():
    assert tiny_pipeline().model.moe_layers == vector("b_dit_forward")["moe_layers"].tolist()


def test_moe_routing_indices_are_identical_and_weights_are_raw_probabilities(recorded):
    b = vector("b_dit_forward")
    assert len(recorded["moe_inputs"]) == len(b["moe_layers"])
    for layer, (moe, hidden) in enumerate(recorded["moe_inputs"]):
        indices, weights = moe.route(hidden.reshape(-1, hidden.shape[-1]))
        order = indices.argsort(dim=-1)  # the vector lists experts by id within a token
        assert torch.equal(indices.gather(-1, order), torch.from_numpy(b["moe_topk_idx"][layer]))
        assert max_abs(weights.gather(-1, order), b["moe_topk_weight"][layer]) <= 1e-6
        assert (weights.sum(-1) < 1).all(), "top-k weights must not be renormalised"


def test_train_and_eval_mode_give_the_same_result():
    model = tiny_pipeline().model
    inputs = (tensor("b_dit_forward", "x"), tensor("b_dit_forward", "t"), {"main": tensor("b_dit_forward", "cond")})
    try:
        model.train()
        with torch.inference_mode():
            train_out = model(*inputs)
    finally:
        model.eval()
    with torch.inference_mode():
        eval_out = model(*inputs)
    assert torch.equal(train_out, eval_out)
    assert max_abs(eval_out, vector("b_dit_forward")["out_eval_mode"]) <= TOLERANCE


def _inputs():
    return tensor("b_dit_forward", "x"), tensor("b_dit_forward", "t"), {"main": tensor("b_dit_forward", "cond")}


def test_loaded_dit_has_fused_projections_and_stacked_experts():
    model = tiny_pipeline().model
    assert all(block.attn1.is_fused and block.attn2.is_fused for block in model.blocks)
    assert all(block.moe.is_stacked for block in model.blocks if block.moe is not None)


def test_fusing_keeps_the_state_dict_keys_values_and_output():
    model = copy.deepcopy(tiny_pipeline().model)
    fused = {key: value.clone() for key, value in model.state_dict().items()}
    for module in model.modules():  # back to per-call concatenation, as before fusing
        if hasattr(module, "_fused_weight"):
            module._fused_weight = module._fused_bias = None
            module._fuse_requested = False
    with torch.inference_mode():
        unfused_out = model(*_inputs())
        model.fuse_weights()
        fused_out = model(*_inputs())
    assert list(model.state_dict()) == list(fused)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in fused.items())
    assert max_abs(fused_out, unfused_out) <= 1e-6
    assert max_abs(fused_out, vector("b_dit_forward")["out"]) <= TOLERANCE


def test_fusion_survives_a_dtype_round_trip_and_a_state_dict_load():
    model = copy.deepcopy(tiny_pipeline().model)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    model.to(torch.float64).to(torch.float32)
    assert model.blocks[0].attn1.is_fused and model.blocks[-1].moe.is_stacked
    model.load_state_dict(state, assign=True)
    assert model.blocks[0].attn1.is_fused and model.blocks[-1].moe.is_stacked
    with torch.inference_mode():
        assert max_abs(model(*_inputs()), vector("b_dit_forward")["out"]) <= TOLERANCE


@pytest.mark.parametrize("dispatch", ["grouped", "dense", "loop"])
def test_every_moe_dispatch_matches_the_vector(dispatch):
    model = copy.deepcopy(tiny_pipeline().model)
    for layer in model.moe_layers:
        model.blocks[layer].moe.dispatch = dispatch
    with torch.inference_mode():
        assert max_abs(model(*_inputs()), vector("b_dit_forward")["out"]) <= TOLERANCE


@pytest.mark.parametrize("dispatch", ["grouped", "dense"])
def test_moe_routing_needs_no_host_synchronisation(dispatch, monkeypatch):
    model = copy.deepcopy(tiny_pipeline().model)
    for layer in model.moe_layers:
        model.blocks[layer].moe.dispatch = dispatch

    def forbidden(*args, **kwargs):
        raise AssertionError("nonzero() synchronises with the host")

    monkeypatch.setattr(torch.Tensor, "nonzero", forbidden)
    monkeypatch.setattr(torch, "nonzero", forbidden)
    with torch.inference_mode():
        out = model(*_inputs())
    assert max_abs(out, vector("b_dit_forward")["out"]) <= TOLERANCE
