"""Vector b: one DiT forward (time token, latent embedding, every block, MoE routing, output)."""

from __future__ import annotations

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
