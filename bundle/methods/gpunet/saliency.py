# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Gradient saliency (Simonyan et al. 2014) as a MONAI inferer: the GP-Unet paper's baselines (b) and (c)."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from monai.visualize import VanillaGrad

__all__ = ["SaliencyInferer"]


class SaliencyInferer(Inferer):
    """Run a count-regression network and return ``{"count": (B, 1), "heatmap": (B, 1, H, W, D)}``, the heatmap being
    the absolute gradient of the predicted count with respect to the input (MONAI ``VanillaGrad``), the largest
    over input channels.

    The network must return the count (e.g. :class:`bundle.methods.gpunet.GPUNet` with ``output="count"``). Gradients
    are enabled inside, so it works under the evaluator's ``no_grad``.
    """

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> dict:
        x = torch.as_tensor(inputs).detach()
        with torch.no_grad():
            count = network(x, *args, **kwargs)
        if count.ndim != 2 or count.shape[1] != 1:
            raise ValueError(f"SaliencyInferer needs a network returning a (B, 1) count, got {tuple(count.shape)}")
        saliency = VanillaGrad(network)
        with torch.enable_grad():
            grads = [saliency(x[b : b + 1].clone(), index=0) for b in range(len(x))]
        heat = torch.cat(grads).abs().amax(1, keepdim=True)
        # keep the input's metadata (MONAI Invertd needs the preprocessing's trace to map the heatmap back)
        return {"count": count, "heatmap": convert_to_dst_type(heat, inputs)[0]}
