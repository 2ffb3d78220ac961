"""UNet shapes and symmetry, emulator steps, thermalizer methods, and overfitting tiny batches."""
import pytest
import torch
from torch import nn

from thermalizer_core.models import ddpm
from thermalizer_core.models.emulator import Emulator
from thermalizer_core.models.thermalizer import Thermalizer
from thermalizer_core.models.unet import UNet, count_parameters, default_architecture

TINY = {"base_channels": 8, "channel_mults": (1, 2), "blocks_per_level": 1}


def randomize_output_layer(unet: UNet) -> None:
    """Give the zero-initialized output conv random weights, so eps depends on the input."""
    nn.init.normal_(unet.out_conv.weight, std=0.1)
    nn.init.normal_(unet.out_conv.bias, std=0.1)


@pytest.mark.parametrize("dims, grid", [(1, (32,)), (2, (16, 16))])
def test_unet_output_shapes(dims, grid):
    unet = UNet(dims, in_channels=2, out_channels=3, channel_mults=(1, 2, 2), base_channels=8, blocks_per_level=2)
    eps = unet(torch.randn(4, 2, *grid))
    assert eps.shape == (4, 3, *grid)


@pytest.mark.parametrize("dims, grid", [(1, (32,)), (2, (16, 16))])
def test_classifier_head_shape(dims, grid):
    unet = UNet(dims, in_channels=1, out_channels=1, num_classes=1000, **TINY)
    eps, level_logits = unet(torch.randn(3, 1, *grid))
    assert eps.shape == (3, 1, *grid)
    assert level_logits.shape == (3, 1000)


def test_classifier_reads_decoder_levels():
    """The head pools the last decoder level too, so its weights get a gradient from the logits alone."""
    torch.manual_seed(0)
    unet = UNet(2, in_channels=1, out_channels=1, num_classes=10, **TINY)
    _, level_logits = unet(torch.randn(2, 1, 8, 8))
    level_logits.square().sum().backward()

    last_decoder_gradient = unet.decoder[-1][0].conv2.weight.grad
    assert last_decoder_gradient is not None
    assert last_decoder_gradient.abs().sum().item() > 0
    assert unet.out_conv.weight.grad is None


@pytest.mark.parametrize("dims, grid, shifts", [(1, (32,), (4,)), (2, (16, 16), (4, 12))])
def test_unet_circular_equivariance(dims, grid, shifts):
    torch.manual_seed(1)
    unet = UNet(dims, in_channels=2, out_channels=2, base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=1, num_classes=7)
    randomize_output_layer(unet)
    spatial_dims = tuple(range(2, 2 + dims))
    x = torch.randn(2, 2, *grid, dtype=torch.float64)
    unet = unet.double()

    eps, logits = unet(x)
    eps_shifted, logits_shifted = unet(torch.roll(x, shifts, spatial_dims))

    assert eps.abs().max().item() > 1e-3
    assert (eps_shifted - torch.roll(eps, shifts, spatial_dims)).abs().max().item() < 1e-10
    assert (logits_shifted - logits).abs().max().item() < 1e-10


def test_unet_rejects_indivisible_grid():
    unet = UNet(1, in_channels=1, out_channels=1, base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        unet(torch.randn(1, 1, 30))


def test_unet_rejects_wrong_channels():
    unet = UNet(2, in_channels=2, out_channels=2, **TINY)
    with pytest.raises(ValueError, match=r"\(B, 2, n, n\)"):
        unet(torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize("dims, low, high", [(1, 0.2e6, 0.4e6), (2, 0.3e6, 0.5e6)])
def test_default_unet_size(dims, low, high):
    unet = UNet(dims, in_channels=1, out_channels=1, **default_architecture(dims))
    assert low <= count_parameters(unet) <= high


def test_emulator_starts_as_identity():
    emulator = Emulator(channels=2, dims=2, mean=[1.0, -2.0], std=[0.5, 3.0], **TINY)
    field = torch.randn(3, 2, 8, 8, dtype=torch.float64)

    stepped = emulator.step(field)

    assert stepped.dtype == torch.float64
    assert (stepped - field).abs().max().item() < 1e-12


def test_emulator_noise_in_normalized_units():
    std = [0.5, 4.0]
    emulator = Emulator(channels=2, dims=1, sigma=0.1, mean=[1.0, -2.0], std=std, **TINY)
    field = torch.zeros(200, 2, 32)

    first = emulator.step(field, generator=torch.Generator().manual_seed(0))
    again = emulator.step(field, generator=torch.Generator().manual_seed(0))
    deterministic = emulator.step(field, sigma=0.0)

    assert torch.equal(first, again)
    assert deterministic.abs().max().item() < 1e-5
    increment_std = (first - deterministic).std(dim=(0, 2))
    for channel, channel_std in enumerate(std):
        assert increment_std[channel].item() == pytest.approx(0.1 * channel_std, rel=0.02)


def test_emulator_config_round_trip():
    emulator = Emulator(channels=1, dims=1, sigma=0.02, **TINY)
    rebuilt = Emulator.from_config(emulator.config())
    assert rebuilt.config() == emulator.config()
    assert count_parameters(rebuilt) == count_parameters(emulator)


def test_emulator_overfits_tiny_batch():
    torch.manual_seed(2)
    emulator = Emulator(channels=1, dims=1, **TINY)
    x = torch.randn(4, 1, 32)
    increment = 0.5 * (torch.roll(x, 1, dims=2) - x) + 0.1 * x**2
    optimizer = torch.optim.Adam(emulator.parameters(), lr=3e-3)

    losses = []
    for _ in range(150):
        loss = nn.functional.mse_loss(emulator(x), increment)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < losses[0] / 100, f"loss went from {losses[0]:.4g} to {losses[-1]:.4g}"


def test_thermalizer_overfits_tiny_batch():
    torch.manual_seed(3)
    thermalizer = Thermalizer(channels=1, dims=1, classifier_hidden=32, **TINY)
    x0 = torch.randn(8, 1, 32)
    t = torch.tensor([0, 5, 10, 50, 100, 300, 600, 900])
    noise = torch.randn(x0.shape)
    optimizer = torch.optim.Adam(thermalizer.parameters(), lr=3e-3)

    history = []
    for _ in range(200):
        total, mse, ce = thermalizer.loss(x0, t, noise, lambda_ce=0.1)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append((total.item(), mse.item(), ce.item()))

    (total_0, mse_0, ce_0), (total_n, mse_n, ce_n) = history[0], history[-1]
    assert ce_0 == pytest.approx(6.9, abs=0.3)
    assert total_n < total_0 / 20, f"total loss went from {total_0:.4g} to {total_n:.4g}"
    assert mse_n < mse_0 / 10, f"MSE went from {mse_0:.4g} to {mse_n:.4g}"
    assert ce_n < ce_0 / 20, f"cross entropy went from {ce_0:.4g} to {ce_n:.4g}"


def test_thermalizer_loss_terms():
    torch.manual_seed(4)
    thermalizer = Thermalizer(channels=1, dims=1, classifier_hidden=16, **TINY)
    x0 = torch.randn(2, 1, 16)
    t = torch.tensor([3, 40])
    noise = torch.randn(x0.shape)

    total, mse, ce = thermalizer.loss(x0, t, noise, lambda_ce=0.5)

    eps, logits = thermalizer(ddpm.q_sample(x0, t, noise, thermalizer.schedule))
    assert mse.item() == pytest.approx(((eps - noise) ** 2).mean().item(), rel=1e-6)
    assert ce.item() == pytest.approx(nn.functional.cross_entropy(logits, t).item(), rel=1e-6)
    assert total.item() == pytest.approx(mse.item() + 0.5 * ce.item(), rel=1e-6)


def test_thermalizer_classify_and_probabilities():
    thermalizer = Thermalizer(channels=2, dims=2, classifier_hidden=16, mean=[0.0, 1.0], std=[2.0, 3.0], **TINY)
    field = torch.randn(5, 2, 8, 8, dtype=torch.float64)

    probabilities = thermalizer.level_probabilities(field)
    levels = thermalizer.classify(field)

    assert probabilities.shape == (5, 1000)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(5))
    assert levels.dtype == torch.long
    assert torch.equal(levels, probabilities.argmax(dim=1))


def test_thermalizer_denoise_members():
    torch.manual_seed(5)
    thermalizer = Thermalizer(channels=1, dims=1, classifier_hidden=16, mean=[0.5], std=[2.0], **TINY)
    randomize_output_layer(thermalizer.unet)
    field = torch.randn(4, 1, 16, dtype=torch.float64)
    start_levels = torch.tensor([10, 4, 2, 7])

    for forward_diffuse in (False, True):
        denoised, steps = thermalizer.denoise(field, start_levels, 4, forward_diffuse, torch.Generator().manual_seed(6))
        again, _ = thermalizer.denoise(field, start_levels, 4, forward_diffuse, torch.Generator().manual_seed(6))

        assert denoised.dtype == torch.float64
        assert steps.tolist() == [6, 0, 0, 3]
        assert torch.equal(denoised, again)
        assert torch.equal(denoised[1:3], field[1:3])
        assert (denoised[[0, 3]] - field[[0, 3]]).abs().max().item() > 1e-3


def test_thermalizer_config_round_trip():
    schedule = {"kind": "cosine", "T": 200, "s": 0.008, "max_beta": 0.999}
    thermalizer = Thermalizer(channels=2, dims=2, classifier_hidden=16, schedule=schedule, **TINY)
    rebuilt = Thermalizer.from_config(thermalizer.config())

    assert rebuilt.config() == thermalizer.config()
    assert rebuilt.T == 200
    _, logits = rebuilt(torch.randn(1, 2, 8, 8))
    assert logits.shape == (1, 200)


def test_thermalizer_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="unknown noise schedule kind 'linear'"):
        Thermalizer(channels=1, dims=1, schedule={"kind": "linear", "T": 10}, **TINY)
