"""Grades labs 3 and 4's models (labs/models.py): exercises 3.1 (LeNet-5), 4.1 (AlexNet) and 4.2
(local response normalisation with a hand-written backward pass).

AlexNet has 61 million parameters, so these tests build it as rarely as they can: parameter
counts on PyTorch's "meta" device (shapes without memory), one shared model for the checks
that only read it, one forward pass at the paper's 227x227 and small images elsewhere.

During grading a model lives in the worker that runs the student's code: the tests read its
outputs and weights as data, and anything that needs autograd through it (gradients, training
steps) runs there through `in_worker` and a probe.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from labs.grader.worker import probes, references
from tests.helpers import assert_close, assert_leaves_inputs_unchanged, in_worker

# ---------------------------------------------------------------- 3.1 LeNet-5

LENET_SHAPES = {  # LeCun et al. 1998, Fig. 2, for one 1x32x32 image
    "c1": (6, 28, 28),
    "s2": (6, 14, 14),
    "c3": (16, 10, 10),
    "s4": (16, 5, 5),
    "c5": (120, 1, 1),
    "f6": (84,),
    "output": (10,),
}


@pytest.fixture
def lab_conv(conv, monkeypatch):
    """labs.conv with its Conv2d computed by torch (F.conv2d and autograd, counting its calls), so that
    LeNet5(conv="lab") needs only lab 2's provided code and a mistake in lab 2 costs lab 2's points only."""
    monkeypatch.setattr(conv, "Conv2dFunction", references.TorchConv2dFunction)
    in_worker(probes.reset_reference_calls, conv)
    return conv


def _lenet_reference(state: dict, x: torch.Tensor, activation: str, pooling: str) -> torch.Tensor:
    """LeNet-5 written out with torch.nn.functional, reading the weights by layer name."""
    act = torch.tanh if activation == "tanh" else torch.relu

    def pool(h, name):
        if pooling == "avg":
            return F.avg_pool2d(h, 2)
        if pooling == "max":
            return F.max_pool2d(h, 2)
        return F.conv2d(h, state[f"{name}.weight"], state[f"{name}.bias"], stride=2)

    h = act(F.conv2d(x, state["c1.weight"], state["c1.bias"]))  # (N, 6, 28, 28)
    h = pool(h, "s2")  # (N, 6, 14, 14)
    h = act(F.conv2d(h, state["c3.weight"], state["c3.bias"]))  # (N, 16, 10, 10)
    h = pool(h, "s4")  # (N, 16, 5, 5)
    c5 = state["c5.weight"].reshape(120, 16, 5, 5)  # a Linear(400, 120) C5 holds the same numbers
    h = act(F.conv2d(h, c5, state["c5.bias"])).flatten(1)  # (N, 120)
    h = act(F.linear(h, state["f6.weight"], state["f6.bias"]))  # (N, 84)
    return F.linear(h, state["output.weight"], state["output.bias"])  # (N, 10)


@pytest.mark.ex3_1
def test_lenet5_has_61706_parameters(models):
    # C1 6*(1*25+1) = 156, C3 16*(6*25+1) = 2,416, C5 120*(16*25+1) = 48,120,
    # F6 84*(120+1) = 10,164, output 10*(84+1) = 850: 61,706 in all; pooling adds none.
    for pooling in ("avg", "max"):
        with torch.device("meta"):
            net = models.LeNet5(pooling=pooling)
        count = sum(p.numel() for p in net.parameters())
        assert count == 61_706, f"LeNet5(pooling={pooling!r}) has {count:,} parameters, expected 61,706"


@pytest.mark.ex3_1
def test_lenet5_strided_convolutions_add_1190_parameters(models):
    # S2 as a 2x2 stride-2 convolution: 6*(6*4+1) = 150; S4: 16*(16*4+1) = 1,040. 61,706 + 1,190 = 62,896.
    with torch.device("meta"):
        net = models.LeNet5(pooling="stride")
    count = sum(p.numel() for p in net.parameters())
    assert count == 62_896, f"LeNet5(pooling='stride') has {count:,} parameters, expected 62,896"


@pytest.mark.ex3_1
@pytest.mark.parametrize("pooling", ["avg", "max", "stride"])
def test_lenet5_layers_have_the_papers_shapes(models, pooling):
    net = models.LeNet5(pooling=pooling)
    maps = net.feature_maps(torch.randn(3, 1, 32, 32))
    for name, shape in LENET_SHAPES.items():
        assert name in maps, f"LeNet5 has no layer named {name!r}: name the layers c1, s2, c3, s4, c5, f6, output (found {list(maps)})"
        got = tuple(maps[name].shape)
        assert got == (3, *shape), f"LeNet5's {name} produced shape {got} for a batch of 3, expected {(3, *shape)}"


@pytest.mark.ex3_1
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lenet5_by_hand_with_averaging_weights(models, activation):
    # Every weight 1/fan_in and every bias 0: each convolution and linear layer averages its
    # inputs, and pooling a constant map keeps it, so a blank image of ones stays constant.
    # ReLU keeps 1 everywhere; tanh follows C1, C3, C5 and F6: tanh(tanh(tanh(tanh(1)))) = 0.5127.
    net = models.LeNet5(activation=activation, pooling="max")
    averaging = {name: torch.full_like(p, 1.0 / p[0].numel()) if p.dim() > 1 else torch.zeros_like(p) for name, p in net.state_dict().items()}
    net.load_state_dict(averaging)
    expected = 1.0 if activation == "relu" else math.tanh(math.tanh(math.tanh(math.tanh(1.0))))
    with torch.no_grad():
        logits = net(torch.ones(2, 1, 32, 32))
    assert_close(logits, torch.full((2, 10), expected), f"LeNet5(activation={activation!r}) logits for an image of ones")


@pytest.mark.ex3_1
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("pooling", ["avg", "max", "stride"])
def test_lenet5_matches_a_functional_reference(models, activation, pooling):
    torch.manual_seed(0)
    net = models.LeNet5(activation=activation, pooling=pooling).double()
    x = torch.randn(4, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = _lenet_reference(net.state_dict(), x, activation, pooling)
        actual = net(x)
    assert_close(actual, expected, f"LeNet5(activation={activation!r}, pooling={pooling!r}) logits")


@pytest.mark.ex3_1
@pytest.mark.parametrize("pooling", ["avg", "stride"])
def test_lenet5_with_lab_conv_matches_torch_conv(models, lab_conv, pooling):
    torch.manual_seed(0)
    reference = models.LeNet5(pooling=pooling, conv="torch")
    net = models.LeNet5(pooling=pooling, conv="lab")
    convs = in_worker(probes.count_modules, net, lab_conv.Conv2d)
    expected_convs = 5 if pooling == "stride" else 3
    assert convs == expected_convs, f"LeNet5(conv='lab', pooling={pooling!r}) should hold {expected_convs} lab Conv2d layers, found {convs}"
    net.load_state_dict(reference.state_dict())
    x = torch.randn(4, 1, 32, 32)
    out, expected = net(x), reference(x)
    calls = in_worker(probes.reference_calls, lab_conv)["Conv2dFunction"]
    assert calls == expected_convs, f"a forward pass of LeNet5(conv='lab') should call lab 2's Conv2d {expected_convs} times, called it {calls}"
    assert_close(out, expected, "LeNet5(conv='lab') logits")
    dout = 2 * expected.detach()  # the gradient of expected.square().sum()
    ours, theirs = in_worker(probes.forward_backward, net, (x,), dout), in_worker(probes.forward_backward, reference, (x,), dout)
    assert_close(ours["parameter_grads"]["c1.weight"], theirs["parameter_grads"]["c1.weight"], "gradient of c1's weight with conv='lab'")


@pytest.mark.ex3_1
def test_lenet5_every_option_combination_builds_and_runs(models, lab_conv):
    x = torch.randn(2, 1, 32, 32)
    for activation in ("tanh", "relu"):
        for pooling in ("avg", "max", "stride"):
            for conv in ("torch", "lab"):
                net = models.LeNet5(num_classes=7, activation=activation, pooling=pooling, conv=conv)
                logits = net(x)
                what = f"LeNet5(num_classes=7, activation={activation!r}, pooling={pooling!r}, conv={conv!r})"
                assert logits.shape == (2, 7), f"{what} gave logits of shape {tuple(logits.shape)}, expected (2, 7)"
                grads = in_worker(probes.forward_backward, net, (x,), torch.ones(2, 7))["parameter_grads"]  # logits.sum()
                missing = [name for name, grad in grads.items() if grad is None]
                assert not missing, f"{what}: some parameters get no gradient: {missing}"


@pytest.mark.ex3_1
def test_lenet5_training_steps_lower_the_loss(models):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
    net = models.LeNet5()
    losses = in_worker(probes.sgd_losses, net, x, y, lr=0.1, steps=5)
    assert losses[-1] < losses[0], f"five gradient steps on one batch should lower the loss, got {[round(v, 3) for v in losses]}"


@pytest.mark.ex3_1
@pytest.mark.provided
@pytest.mark.parametrize(
    "shape, dtype, match",
    [
        ((2, 1, 28, 28), torch.float32, "pad MNIST by 2"),
        ((2, 3, 32, 32), torch.float32, "one grey channel"),
        ((1, 32, 32), torch.float32, "add a batch dimension"),
        ((32, 32), torch.float32, r"\(N, 1, 32, 32\), got \(32, 32\)"),
        ((2, 1, 64, 64), torch.float32, "32x32"),
        ((2, 1, 32, 32), torch.uint8, "float"),
    ],
)
def test_lenet5_rejects_bad_input_with_advice(models, shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        models.LeNet5.check_input(torch.zeros(shape, dtype=dtype))


@pytest.mark.ex3_1
@pytest.mark.provided
@pytest.mark.parametrize("option", [{"activation": "sigmoid"}, {"pooling": "min"}, {"conv": "numpy"}, {"num_classes": 0}])
def test_lenet5_rejects_unknown_options(models, option):
    with pytest.raises(ValueError, match="LeNet5"):
        models.LeNet5(**option)


# ---------------------------------------------------------------- 4.1 AlexNet

ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


@pytest.fixture(scope="module")
def alexnet(models):
    """One paper-sized AlexNet (groups=2) in eval mode, for the tests that only read it."""
    torch.manual_seed(0)
    return models.AlexNet().eval()


def _paper_lrn(a: torch.Tensor, groups: int, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> torch.Tensor:
    """Section 3.3: b[i] = a[i] / (k + alpha * sum of a[j]^2 for j in [i - n/2, i + n/2]) ** beta, per tower."""
    towers = []
    for tower in a.chunk(groups, dim=1):
        C = tower.shape[1]
        squares = tower.square()
        sums = torch.stack([squares[:, max(0, i - n // 2) : min(C, i + n // 2 + 1)].sum(1) for i in range(C)], dim=1)
        towers.append(tower / (k + alpha * sums) ** beta)
    return torch.cat(towers, dim=1)


def _alexnet_reference(net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """AlexNet in eval mode written out with torch.nn.functional, reading the weights by layer name.

    Returns the input each named layer should receive, and the logits (under "output").
    """
    groups, expected = net.groups, {}
    h = F.relu(net.conv1(x))  # (N, 96, 55, 55)
    expected["conv2"] = h = F.max_pool2d(_paper_lrn(h, groups), 3, 2)  # (N, 96, 27, 27)
    h = F.relu(F.conv2d(h, net.conv2.weight, net.conv2.bias, padding=2, groups=groups))  # (N, 256, 27, 27)
    expected["conv3"] = h = F.max_pool2d(_paper_lrn(h, groups), 3, 2)  # (N, 256, 13, 13)
    expected["conv4"] = h = F.relu(F.conv2d(h, net.conv3.weight, net.conv3.bias, padding=1))  # (N, 384, 13, 13)
    expected["conv5"] = h = F.relu(F.conv2d(h, net.conv4.weight, net.conv4.bias, padding=1, groups=groups))  # (N, 384, 13, 13)
    h = F.relu(F.conv2d(h, net.conv5.weight, net.conv5.bias, padding=1, groups=groups))  # (N, 256, 13, 13)
    expected["fc6"] = h = F.adaptive_avg_pool2d(F.max_pool2d(h, 3, 2), 6).flatten(1)  # (N, 9216)
    expected["fc7"] = h = F.relu(F.linear(h, net.fc6.weight, net.fc6.bias))  # (N, 4096)
    expected["fc8"] = h = F.relu(F.linear(h, net.fc7.weight, net.fc7.bias))  # (N, 4096)
    expected["output"] = F.linear(h, net.fc8.weight, net.fc8.bias)  # (N, num_classes)
    return expected


def _layer_inputs(net, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """Run net(x) and return {name: the input the layer `name` received}, and the output."""
    seen = {}
    hooks = [getattr(net, name).register_forward_pre_hook(lambda module, inputs, name=name: seen.setdefault(name, inputs[0])) for name in names]
    try:
        seen["output"] = net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.ex4_1
def test_alexnet_has_the_papers_parameter_counts(models):
    # weights + biases: conv1 96*3*11*11 + 96 = 34,944; conv2 256*48*5*5 + 256 = 307,456 (groups=2:
    # each kernel sees 96/2 = 48 maps); conv3 384*256*3*3 + 384 = 885,120; conv4 384*192*9 + 384 =
    # 663,936; conv5 256*192*9 + 256 = 442,624; fc6 4096*9216 + 4096 = 37,752,832;
    # fc7 4096*4096 + 4096 = 16,781,312; fc8 1000*4096 + 1000 = 4,097,000. Total 60,965,224.
    expected = dict(zip(ALEXNET_LAYERS, (34_944, 307_456, 885_120, 663_936, 442_624, 37_752_832, 16_781_312, 4_097_000)))
    with torch.device("meta"):
        net = models.AlexNet()
    for name, count in expected.items():
        layer = getattr(net, name, None)
        assert layer is not None, f"AlexNet has no layer named {name!r}: name the layers conv1..conv5, fc6, fc7, fc8"
        got = sum(p.numel() for p in layer.parameters())
        assert got == count, f"AlexNet's {name} has {got:,} parameters, expected {count:,}"
    total = sum(p.numel() for p in net.parameters())
    assert total == 60_965_224, f"AlexNet(groups=2) has {total:,} parameters, expected 60,965,224"


@pytest.mark.ex4_1
def test_alexnet_with_one_tower_has_62378344_parameters(models):
    # groups=1 doubles the kernels' depth in conv2 (+307,200), conv4 (+663,552) and conv5 (+442,368).
    with torch.device("meta"):
        net = models.AlexNet(groups=1)
    total = sum(p.numel() for p in net.parameters())
    assert total == 62_378_344, f"AlexNet(groups=1) has {total:,} parameters, expected 62,378,344"


@pytest.mark.ex4_1
def test_alexnet_layers_have_the_papers_shapes_at_227(models, alexnet):
    rows = models.summarize(alexnet, torch.randn(1, 3, 227, 227))
    outputs = {row.name: row.output_shape for row in rows}
    expected = {
        "conv1": (96, 55, 55),  # 290,400 values
        "conv2": (256, 27, 27),  # 186,624
        "conv3": (384, 13, 13),  # 64,896
        "conv4": (384, 13, 13),  # 64,896
        "conv5": (256, 13, 13),  # 43,264
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    }
    for name, shape in expected.items():
        assert outputs.get(name) == shape, f"AlexNet's {name} produced {outputs.get(name)} for one 3x227x227 image, expected {shape}"
    # Between the named layers: every shape the network passes through, in order (repeats merged).
    path = [rows[0].output_shape]
    for row in rows[1:]:
        if row.output_shape != path[-1]:
            path.append(row.output_shape)
    expected_path = [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6), (9216,), (4096,), (1000,)]
    assert path == expected_path, f"AlexNet's layers go through shapes {path}, expected {expected_path}"


@pytest.mark.ex4_1
def test_alexnet_matches_a_functional_reference_with_the_papers_lrn(alexnet):
    # Bright inputs: with small activations LRN is almost a constant factor 2 ** -0.75 and its
    # details (alpha's scale, which channels share a window) would hide below the tolerance.
    # Each layer's input is compared, so that a difference is caught where it starts.
    x = 100 * torch.randn(2, 3, 67, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _alexnet_reference(alexnet, x)
        actual = _layer_inputs(alexnet, x, [name for name in expected if name != "output"])
    for name, value in expected.items():
        what = "AlexNet's logits" if name == "output" else f"the input of AlexNet's {name} (eval mode, 67x67 images)"
        assert_close(actual[name], value, what, rtol=1e-4, atol=1e-5)


@pytest.mark.ex4_1
@pytest.mark.parametrize(
    "after, before, layers",
    [
        ("conv1", "conv2", "norm1 and pool1"),
        ("conv1", "conv3", "conv2, its LRN and pool2"),
        ("conv3", "conv5", "conv4"),
        ("conv4", "fc6", "conv5 and pool5"),
    ],
)
def test_alexnet_towers_stay_apart_in_conv2_conv4_and_conv5(alexnet, after, before, layers):
    x = torch.randn(1, 3, 67, 67, generator=torch.Generator().manual_seed(2))
    from_second, from_first = in_worker(probes.cross_tower_gradient, alexnet, x, after, before)
    assert from_second == 0 and from_first == 0, (
        f"with groups=2 the towers must not mix in {layers} (from {after}'s output to {before}'s input): one tower's "
        f"outputs depend on the other's inputs (largest gradients {from_second:.3g} and {from_first:.3g}); "
        "use groups=groups in the convolutions and TowerLocalResponseNorm(groups=groups)"
    )


@pytest.mark.ex4_1
@pytest.mark.parametrize("after, before, layer", [("conv2", "conv4", "conv3"), ("conv5", "fc7", "fc6"), ("fc6", "fc8", "fc7")])
def test_alexnet_towers_meet_in_conv3_and_the_fully_connected_layers(alexnet, after, before, layer):
    x = torch.randn(1, 3, 67, 67, generator=torch.Generator().manual_seed(3))
    from_second, from_first = in_worker(probes.cross_tower_gradient, alexnet, x, after, before)
    assert from_second > 0 and from_first > 0, (
        f"{layer} should read both towers (as in the paper), but one tower's outputs ignore the other's inputs "
        f"(largest gradients {from_second:.3g} and {from_first:.3g}): {layer} takes no groups argument"
    )


@pytest.mark.ex4_1
def test_two_tower_alexnet_on_two_cpus_equals_the_grouped_model(models, alexnet):
    towers = models.TwoTowerAlexNet(alexnet, devices=("cpu", "cpu")).eval()
    x = torch.randn(2, 3, 67, 67, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_close(towers(x), alexnet(x), "TwoTowerAlexNet logits against AlexNet(groups=2)", rtol=1e-4, atol=1e-5)


@pytest.mark.ex4_1
def test_alexnet_dropout_is_active_only_in_training(alexnet):
    x = torch.randn(2, 3, 67, 67, generator=torch.Generator().manual_seed(5))
    try:
        alexnet.train()
        with torch.no_grad():
            first, second = alexnet(x), alexnet(x)
        assert not torch.equal(first, second), "in train mode, dropout should make two forward passes differ"
    finally:
        alexnet.eval()
    with torch.no_grad():
        assert torch.equal(alexnet(x), alexnet(x)), "in eval mode, forward passes should be deterministic (dropout off)"


@pytest.mark.ex4_1
@pytest.mark.parametrize(
    "options, size",
    [
        ({"num_classes": 10, "groups": 1, "dropout": 0.2}, 96),  # CIFAR-10 upsampled to 96x96: pool5 is 1x1
        ({"num_classes": 10, "small_inputs": True}, 64),  # CIFAR-10 upsampled to 64x64
    ],
)
def test_alexnet_runs_on_small_images_with_any_number_of_classes(models, options, size):
    net = models.AlexNet(**options)
    logits = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 10), f"AlexNet({options}) gave logits of shape {tuple(logits.shape)} for 2 images of {size}x{size}, expected (2, 10)"
    assert torch.isfinite(logits).all(), f"AlexNet({options}) gave non-finite logits"


@pytest.mark.ex4_1
def test_alexnet_training_steps_lower_the_loss(models):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    net = models.AlexNet(num_classes=10, dropout=0.0, small_inputs=True)
    losses = in_worker(probes.sgd_losses, net, x, y, lr=0.01, steps=3)
    assert losses[-1] < losses[0], f"three gradient steps on one batch should lower the loss, got {[round(v, 4) for v in losses]}"


@pytest.mark.ex4_1
@pytest.mark.provided
def test_tower_local_response_norm_by_hand(models):
    # size 3, alpha 1, beta 1, k 1 on channels (1, 2, 3): b = a / (1 + sum of squares of a and its neighbours)
    # b0 = 1 / (1 + 1 + 4) = 1/6, b1 = 2 / (1 + 1 + 4 + 9) = 2/15, b2 = 3 / (1 + 4 + 9) = 3/14
    lrn = models.TowerLocalResponseNorm(size=3, alpha=1.0, beta=1.0, k=1.0)
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert_close(lrn(a).flatten(), torch.tensor([1 / 6, 2 / 15, 3 / 14], dtype=torch.float64), "TowerLocalResponseNorm")
    # Two towers of two channels, (1, 2) and (3, 4): nothing crosses between them.
    # b = (1/(1+1+4), 2/(1+1+4), 3/(1+9+16), 4/(1+9+16))
    two = models.TowerLocalResponseNorm(size=3, alpha=1.0, beta=1.0, k=1.0, groups=2)
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)
    assert_close(two(a).flatten(), torch.tensor([1 / 6, 2 / 6, 3 / 26, 4 / 26], dtype=torch.float64), "TowerLocalResponseNorm(groups=2)")


@pytest.mark.ex4_1
@pytest.mark.provided
def test_tower_local_response_norm_uses_the_papers_alpha(models):
    a = torch.randn(2, 96, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for groups in (1, 2):
        assert_close(models.TowerLocalResponseNorm(groups=groups)(a), _paper_lrn(a, groups), f"TowerLocalResponseNorm(groups={groups})")


@pytest.mark.ex4_1
@pytest.mark.provided
@pytest.mark.parametrize(
    "shape, small_inputs, match",
    [
        ((2, 1, 227, 227), False, "RGB"),
        ((3, 227, 227), False, "add a batch dimension"),
        ((2, 3, 64, 64), False, "small_inputs=True"),
        ((2, 3, 28, 28), True, "at least 29x29"),
    ],
)
def test_alexnet_rejects_bad_input_with_advice(models, shape, small_inputs, match):
    with pytest.raises(ValueError, match=match):
        models.AlexNet.check_input(torch.zeros(shape), small_inputs)


@pytest.mark.ex4_1
@pytest.mark.provided
@pytest.mark.parametrize("option", [{"groups": 3}, {"dropout": 1.0}, {"num_classes": -1}, {"small_inputs": "yes"}])
def test_alexnet_rejects_bad_options(models, option):
    with pytest.raises(ValueError, match="AlexNet"):
        models.AlexNet(**option)


@pytest.mark.ex4_1
@pytest.mark.provided
def test_two_tower_alexnet_needs_two_towers(models):
    with torch.device("meta"):
        one_tower = models.AlexNet(groups=1)
    with pytest.raises(ValueError, match="groups=2"):
        models.TwoTowerAlexNet(one_tower, devices=("cpu", "cpu"))


# ---------------------------------------------------------------- 4.2 local response normalisation by hand


def _lrn_input(*shape: int, seed: int) -> torch.Tensor:
    """float64 activations of AlexNet's size after a ReLU, scaled so that the normalisation matters."""
    return 10 * torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.ex4_2
def test_channel_window_sum_by_hand(models):
    # channels (1, 2, 3, 4), window 3: (1+2, 1+2+3, 2+3+4, 3+4); window 1: unchanged; window 5: (6, 10, 10, 9)
    t = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)
    assert_close(models.channel_window_sum(t, 3).flatten(), torch.tensor([3.0, 6.0, 9.0, 7.0], dtype=torch.float64), "channel_window_sum(size=3)")
    assert_close(models.channel_window_sum(t, 1).flatten(), t.flatten(), "channel_window_sum(size=1)")
    assert_close(models.channel_window_sum(t, 5).flatten(), torch.tensor([6.0, 10.0, 10.0, 9.0], dtype=torch.float64), "channel_window_sum(size=5)")


@pytest.mark.ex4_2
def test_channel_window_sum_matches_a_sum_over_each_window(models):
    t = torch.randn(2, 7, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(40))
    for size in (1, 3, 5, 9):
        expected = torch.stack([t[:, max(0, c - size // 2) : c + size // 2 + 1].sum(1) for c in range(7)], dim=1)  # (2, 7, 3, 4)
        assert_close(models.channel_window_sum(t, size), expected, f"channel_window_sum(t of shape (2, 7, 3, 4), size={size})")


@pytest.mark.ex4_2
def test_local_response_norm_forward_by_hand(models):
    # size 3, alpha 1, beta 1, k 1 on channels (1, 2, 3): b = (1/6, 2/15, 3/14), as in test_tower_local_response_norm_by_hand;
    # beta 0.5 and k 2 catch a beta or k left out: b = (1/sqrt(7), 2/sqrt(16), 3/sqrt(15))
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    b = models.LocalResponseNormFunction.apply(a, 3, 1.0, 1.0, 1.0)
    assert_close(b.flatten(), torch.tensor([1 / 6, 2 / 15, 3 / 14], dtype=torch.float64), "LocalResponseNormFunction (size 3, alpha 1, beta 1, k 1)")
    b = models.LocalResponseNormFunction.apply(a, 3, 1.0, 0.5, 2.0)
    expected = torch.tensor([1 / math.sqrt(7), 2 / math.sqrt(16), 3 / math.sqrt(15)], dtype=torch.float64)
    assert_close(b.flatten(), expected, "LocalResponseNormFunction (size 3, alpha 1, beta 0.5, k 2)")


@pytest.mark.ex4_2
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_local_response_norm_forward_matches_the_papers_formula(models, dtype):
    a = _lrn_input(2, 96, 5, 5, seed=41).to(dtype)
    assert_close(models.LocalResponseNormFunction.apply(a, 5, 1e-4, 0.75, 2.0), _paper_lrn(a, 1), "LocalResponseNormFunction (the paper's values)")


def _lrn_case(seed: int):
    """(input, grad_output, size, alpha, beta, k): a small case where every term of the backward pass counts."""
    x = _lrn_input(2, 6, 3, 2, seed=seed)  # (N, C, H, W)
    dout = torch.randn(2, 6, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return x, dout, 3, 0.05, 0.75, 2.0  # a large alpha: the second term of dx is no rounding error


@pytest.mark.ex4_2
def test_local_response_norm_backward_matches_autograd(models):
    x, dout, size, alpha, beta, k = _lrn_case(seed=42)
    leaf = x.clone().requires_grad_()
    expected = F.local_response_norm(leaf, size, alpha=alpha * size, beta=beta, k=k)  # torch's alpha is on the mean
    (want,) = torch.autograd.grad(expected, leaf, dout)
    result = in_worker(probes.forward_backward, models.LocalResponseNormFunction.apply, (x.clone().requires_grad_(), size, alpha, beta, k), dout)
    assert_close(result["output"], expected.detach(), "LocalResponseNormFunction output")
    assert result["input_grads"][0] is not None, "LocalResponseNormFunction.backward gives no gradient for x"
    assert_close(result["input_grads"][0], want, "LocalResponseNormFunction gradient for x (autograd through F.local_response_norm)")


@pytest.mark.ex4_2
def test_local_response_norm_backward_matches_finite_differences(models):
    # What torch.autograd.gradcheck does, with your forward on one side and your backward on the other:
    # d<dout, f(x)>/dx[i] ~ (<dout, f(x + eps e_i)> - <dout, f(x - eps e_i)>) / (2 eps), in float64.
    x, dout, size, alpha, beta, k = _lrn_case(seed=44)
    x, dout = x[:1, :, :2, :1].contiguous(), dout[:1, :, :2, :1].contiguous()  # (1, 6, 2, 1): 12 inputs
    result = in_worker(probes.forward_backward, models.LocalResponseNormFunction.apply, (x.clone().requires_grad_(), size, alpha, beta, k), dout)
    eps, numerical = 1e-6, torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x).view(-1)
        step[i] = eps
        plus = models.LocalResponseNormFunction.apply(x + step.view_as(x), size, alpha, beta, k)
        minus = models.LocalResponseNormFunction.apply(x - step.view_as(x), size, alpha, beta, k)
        numerical.view(-1)[i] = ((plus - minus) * dout).sum() / (2 * eps)
    assert_close(result["input_grads"][0], numerical, "LocalResponseNormFunction gradient for x (central differences of its forward)", rtol=1e-6, atol=1e-7)


@pytest.mark.ex4_2
def test_local_response_norm_leaves_its_input_unchanged(models):
    x = _lrn_input(1, 8, 2, 2, seed=46)
    assert_leaves_inputs_unchanged(models.local_response_norm, {"x": x}, "local_response_norm")


@pytest.mark.ex4_2
def test_tower_local_response_norm_on_your_function_equals_torchs(models):
    a = _lrn_input(2, 96, 4, 4, seed=47)
    for groups in (1, 2):
        ours = models.TowerLocalResponseNorm(groups=groups, impl="lab")(a)
        assert_close(ours, models.TowerLocalResponseNorm(groups=groups)(a), f"TowerLocalResponseNorm(groups={groups}, impl='lab')")


@pytest.mark.ex4_2
@pytest.mark.provided
@pytest.mark.parametrize("bad, match", [((1, 6, 4), "shape"), ((1, 6, 2, 2, 1), "shape")])
def test_local_response_norm_rejects_bad_shapes(models, bad, match):
    with pytest.raises(ValueError, match=match):
        models.local_response_norm(torch.zeros(bad))


@pytest.mark.ex4_2
@pytest.mark.provided
@pytest.mark.parametrize("size", [4, 0, -3])
def test_local_response_norm_needs_an_odd_positive_window(models, size):
    with pytest.raises(ValueError, match="odd positive window size"):
        models.local_response_norm(torch.zeros(1, 6, 2, 2), size)
