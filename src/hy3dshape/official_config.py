"""The ``config.yaml`` of the official ``hunyuan3d-dit-v2-1`` model, as data (FACTS §1).

Used to build the full-size networks on the ``meta`` device (key manifests, memory estimates,
benchmarks) without the weights folder. The real folder's ``config.yaml`` is what ``from_pretrained``
reads; this copy is never used to load weights.
"""

from __future__ import annotations

from typing import Any

#: Inline Dinov2Config of the conditioner (DINOv2-L/14 at 518 px).
DINOV2_LARGE_CONFIG: dict[str, Any] = {
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 1024,
    "image_size": 518,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
}

OFFICIAL_CONFIG: dict[str, Any] = {
    "model": {
        "target": "hy3dshape.models.denoisers.hunyuandit.HunYuanDiTPlain",
        "params": {
            "input_size": 4096,
            "in_channels": 64,
            "hidden_size": 2048,
            "context_dim": 1024,
            "depth": 21,
            "num_heads": 16,
            "qk_norm": True,
            "text_len": 1370,
            "with_decoupled_ca": False,
            "use_attention_pooling": False,
            "qk_norm_type": "rms",
            "qkv_bias": False,
            "use_pos_emb": False,
            "num_moe_layers": 6,
            "num_experts": 8,
            "moe_top_k": 2,
        },
    },
    "vae": {
        "target": "hy3dshape.models.autoencoders.ShapeVAE",
        "params": {
            "num_latents": 4096,
            "embed_dim": 64,
            "num_freqs": 8,
            "include_pi": False,
            "heads": 16,
            "width": 1024,
            "num_encoder_layers": 8,
            "num_decoder_layers": 16,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 1.0039506158752403,
            "geo_decoder_mlp_expand_ratio": 4,
            "geo_decoder_downsample_ratio": 1,
            "geo_decoder_ln_post": True,
            "point_feats": 4,
            "pc_size": 81920,
            "pc_sharpedge_size": 0,
        },
    },
    "conditioner": {
        "target": "hy3dshape.models.conditioner.SingleImageEncoder",
        "params": {
            "main_image_encoder": {
                "type": "DinoImageEncoder",
                "kwargs": {"config": DINOV2_LARGE_CONFIG, "image_size": 518, "use_cls_token": True},
            }
        },
    },
    "scheduler": {
        "target": "hy3dshape.schedulers.FlowMatchEulerDiscreteScheduler",
        "params": {"num_train_timesteps": 1000},
    },
    "image_processor": {
        "target": "hy3dshape.preprocessors.ImageProcessorV2",
        "params": {"size": 512, "border_ratio": 0.15},
    },
    "pipeline": {"target": "hy3dshape.pipelines.Hunyuan3DDiTFlowMatchingPipeline"},
}
