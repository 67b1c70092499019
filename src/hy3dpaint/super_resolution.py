"""Real-ESRGAN x4 super-resolution of the generated views (FACTS §8), without basicsr/realesrgan.

Reproduces ``RealESRGANer(scale=4, tile=0, pre_pad=0).enhance(np.array(rgb_image))`` as upstream
calls it, quirks included: ``enhance`` takes its input for BGR, so an RGB image reaches the network
with its channels **reversed**, and the output is reversed back; the output is clamped to [0, 1]
and rounded (``round(255 x)``) to uint8.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hy3dcore.loading import WeightsError, assign_state_dict, load_weights, select_entry
from hy3dpaint.models.rrdbnet import RRDBNet

logger = logging.getLogger(__name__)

#: Key of the generator weights inside ``RealESRGAN_x4plus.pth``.
CHECKPOINT_KEY = "params_ema"
#: Upscaling factor of RealESRGAN_x4plus.
UPSCALE = 4
_BLOCK_KEY = re.compile(r"^body\.(\d+)\.")


def _architecture_from_state_dict(state_dict: dict[str, torch.Tensor], source: Path) -> dict[str, int]:
    """RRDBNet arguments read off the tensor shapes (x4plus: 64 features, 23 blocks, growth 32)."""
    try:
        conv_first = state_dict["conv_first.weight"]
        grow = state_dict["body.0.rdb1.conv1.weight"]
        conv_last = state_dict["conv_last.weight"]
    except KeyError as error:
        raise WeightsError(f"{source}: not an RRDBNet state dict, missing key {error.args[0]!r}") from error
    blocks = {int(match.group(1)) for key in state_dict if (match := _BLOCK_KEY.match(key))}
    return dict(num_in_ch=conv_first.shape[1], num_out_ch=conv_last.shape[0], num_feat=conv_first.shape[0],
                num_block=len(blocks), num_grow_ch=grow.shape[0])


class RealESRGANUpscaler:
    """x4 upscaler: ``upscaler(image)`` -> image four times larger (PIL RGB in, PIL RGB out).

    fp16 on CUDA and fp32 elsewhere by default (upstream runs ``half=True`` on the GPU).
    """

    def __init__(self, net: RRDBNet):
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None) -> RealESRGANUpscaler:
        """Load ``RealESRGAN_x4plus.pth`` (weights under ``params_ema``) strictly.

        The architecture (features, blocks, growth) is read from the tensor shapes, so smaller
        RRDBNets load too. Raises ``WeightsError`` naming the file and the offending key.
        """
        path = Path(path)
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        state_dict = select_entry(load_weights(path), CHECKPOINT_KEY, path)
        with torch.device("meta"):
            net = RRDBNet(**_architecture_from_state_dict(state_dict, path), scale=UPSCALE)
        assign_state_dict(net, state_dict, path)
        logger.info("loaded RealESRGAN from %s (%s, %s)", path, device, dtype)
        return cls(net.to(device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.net.conv_first.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.conv_first.weight.dtype

    def network_input(self, image: Image.Image) -> torch.Tensor:
        """The tensor the network receives: [1, 3, H, W] float in [0, 1], channels reversed (quirk)."""
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        reversed_channels = np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1))
        return torch.from_numpy(reversed_channels).unsqueeze(0)

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> Image.Image:
        """Upscale ``image`` x4: RGB uint8 = round(255 * clamp(net(reversed input), 0, 1)), reversed back."""
        net_input = self.network_input(image).to(device=self.device, dtype=self.dtype)
        output = self.net(net_input)[0].float().cpu().clamp_(0, 1).numpy()
        rgb = output[::-1].transpose(1, 2, 0)
        return Image.fromarray((rgb * 255.0).round().astype(np.uint8))
