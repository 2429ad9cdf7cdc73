# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""GP-Unet: training (count) and test (heatmap) outputs share weights and agree; saliency; the class-map baseline."""

from __future__ import annotations

import pytest
import torch

from bundle.methods.gpunet import GPUNet, SaliencyInferer


def _x(b=2, shape=(16, 12, 8)):
    torch.manual_seed(1)
    return torch.rand(b, 1, *shape)


def test_average_pooling_heatmap_mean_plus_bias_equals_count():
    torch.manual_seed(0)
    train = GPUNet(1, (4, 8, 8), pooling="avg", output="count").eval()
    test = GPUNet(1, (4, 8, 8), pooling="avg", output="heatmap").eval()
    test.load_state_dict(train.state_dict())  # the same weights, strictly
    x = _x()
    count, heat = train(x), test(x)
    assert count.shape == (2, 1) and heat.shape == (2, 1, 16, 12, 8)
    torch.testing.assert_close(heat.mean(dim=(1, 2, 3, 4)) + train.head.bias, count[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(heat.mean(dim=(1, 2, 3, 4)), count[:, 0])  # the bias is not in the heatmap


def test_sum_pooling_heatmap_sum_plus_bias_equals_count_and_starts_at_the_bias():
    torch.manual_seed(0)
    net = GPUNet(1, (4, 8), pooling="sum", output="both").eval()
    x = _x()
    out = net(x)
    torch.testing.assert_close(out["count"][:, 0], net.head.bias.expand(2))  # zero head: count = bias at start
    assert not out["heatmap"].any()
    torch.nn.init.normal_(net.head.weight)
    out = net(x)
    torch.testing.assert_close(out["heatmap"].sum(dim=(1, 2, 3, 4)) + net.head.bias, out["count"][:, 0])
    avg = GPUNet(1, (4, 8), pooling="avg", output="count").eval()
    avg.load_state_dict(net.state_dict())  # the same model up to the number of voxels
    torch.testing.assert_close(avg(x)[:, 0] - net.head.bias, (out["count"][:, 0] - net.head.bias) / (16 * 12 * 8))


def test_zero_input_gives_zero_features_so_padding_adds_nothing_to_the_count():
    torch.manual_seed(0)
    net = GPUNet(1, (4, 8), pooling="sum", output="both").eval()
    torch.nn.init.normal_(net.head.weight)
    x = torch.zeros(1, 1, 32, 32, 24)
    x[0, 0, 14:18, 14:18, 10:14] = torch.rand(4, 4, 4)  # farther from the border than the receptive field
    padded = torch.zeros(1, 1, 64, 48, 32)
    padded[..., :32, :32, :24] = x
    assert not net.features(torch.zeros(1, 1, 16, 16, 8)).any()  # no convolution bias: zero in, zero out
    torch.testing.assert_close(net(padded)["count"], net(x)["count"], rtol=1e-5, atol=1e-5)
    with_bias = GPUNet(1, (4, 8), pooling="sum", conv_bias=True)
    assert with_bias.features(torch.zeros(1, 1, 16, 16, 8)).any()


def test_max_pooling_count_is_w_dot_max_of_features_plus_bias():
    torch.manual_seed(0)
    net = GPUNet(1, (4, 8), pooling="max", output="both").eval()
    x = _x()
    out = net(x)
    f = net.features(x)
    manual = (net.head.weight.flatten() * f.amax(dim=(2, 3, 4))).sum(1) + net.head.bias
    torch.testing.assert_close(out["count"][:, 0], manual, rtol=1e-5, atol=1e-5)
    heat_manual = (net.head.weight.flatten()[None, :, None, None, None] * f).sum(1, keepdim=True)
    torch.testing.assert_close(out["heatmap"], heat_manual, rtol=1e-5, atol=1e-5)


def test_regression_baseline_without_decoder_upsamples_its_class_map():
    torch.manual_seed(0)
    net = GPUNet(1, (4, 8, 8), decoder=False, pooling="avg", output="both").eval()
    x = _x()
    out = net(x)
    f = net.features(x)
    assert f.shape[2:] == (4, 3, 2)  # two poolings
    assert out["heatmap"].shape == (2, 1, 16, 12, 8)
    small = torch.nn.functional.conv3d(f, net.head.weight)
    torch.testing.assert_close(small.mean(dim=(1, 2, 3, 4)) + net.head.bias, out["count"][:, 0], rtol=1e-5, atol=1e-5)
    assert not any(k.startswith("up") for k in net.state_dict())  # no decoder weights


def test_relu_after_every_convolution_but_the_last():
    net = GPUNet(1, (4, 8), output="both")
    acts = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == len(acts) + 1 and convs[-1] is net.head and net.head.kernel_size == (1, 1, 1)
    f = net.features(_x())
    assert (f >= 0).all()  # the pooled features are post-ReLU


def test_input_size_and_argument_errors():
    net = GPUNet(1, (4, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 1, 10, 12, 8))
    with pytest.raises(ValueError, match="pooling"):
        GPUNet(pooling="median")
    with pytest.raises(ValueError, match="output"):
        GPUNet(output="map")


def test_saliency_inferer_is_the_gradient_of_the_count():
    torch.manual_seed(0)
    net = GPUNet(1, (4, 8), pooling="avg", output="count").eval()
    x = _x(b=2)
    with torch.no_grad():  # as inside MONAI's evaluator
        out = SaliencyInferer()(x, net)
    assert out["heatmap"].shape == (2, 1, 16, 12, 8)
    xr = x[1:2].clone().requires_grad_(True)
    net(xr).sum().backward()
    torch.testing.assert_close(out["heatmap"][1:2], xr.grad.abs())
    torch.testing.assert_close(out["count"], net(x).detach())
    with pytest.raises(ValueError, match="count"):
        SaliencyInferer()(x, GPUNet(1, (4, 8), output="heatmap"))
