"""One convention for bad input across the four exercise modules (CONTRIBUTING.md, "Bad input").

Something that is not a tensor is a TypeError that names what it got; a tensor of the wrong dtype
or shape is a ValueError that names the dtype or shape. Checked here on the reference, whose input
checks the stubs share (they are provided code, outside the solution markers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import labs.basics as basics
import labs.conv as conv
import labs.mlp as mlp
import labs.models as models

X4 = torch.zeros(1, 1, 6, 6)
W4 = torch.zeros(1, 1, 3, 3)
X3 = torch.zeros(1, 1, 6)
W3 = torch.zeros(1, 1, 3)

# (name, call with the bad value in its first tensor argument); each is called with an ndarray and an int64 tensor
FLOAT_FUNCTIONS = {
    "softmax": lambda bad: mlp.softmax(bad),
    "log_softmax": lambda bad: mlp.log_softmax(bad),
    "relu": lambda bad: mlp.relu(bad),
    "sigmoid_grad": lambda bad: mlp.sigmoid_grad(bad),
    "softmax_jacobian": lambda bad: mlp.softmax_jacobian(bad),
    "conv1d": lambda bad: conv.conv1d(bad, W3),
    "conv1d (weight)": lambda bad: conv.conv1d(X3, bad),
    "conv2d": lambda bad: conv.conv2d(bad, W4),
    "conv2d_naive": lambda bad: conv.conv2d_naive(bad, W4),
    "conv2d_backward (dout)": lambda bad: conv.conv2d_backward(bad, X4, W4),
    "max_pool2d": lambda bad: conv.max_pool2d(bad, 2),
    "avg_pool2d": lambda bad: conv.avg_pool2d(bad, 2),
    "LeNet5.check_input": lambda bad: models.LeNet5.check_input(bad),
    "AlexNet.check_input": lambda bad: models.AlexNet.check_input(bad),
    "local_response_norm": lambda bad: models.local_response_norm(bad),
}
SHAPES = {  # a float value of the right shape for each: the ndarray and the int64 tensor take it
    "softmax": (2, 3), "log_softmax": (2, 3), "relu": (4,), "sigmoid_grad": (4,), "softmax_jacobian": (3,),
    "conv1d": (1, 1, 6), "conv1d (weight)": (1, 1, 3), "conv2d": (1, 1, 6, 6), "conv2d_naive": (1, 1, 6, 6),
    "conv2d_backward (dout)": (1, 1, 4, 4), "max_pool2d": (1, 1, 6, 6), "avg_pool2d": (1, 1, 6, 6),
    "LeNet5.check_input": (2, 1, 32, 32), "AlexNet.check_input": (2, 3, 227, 227),
    "local_response_norm": (1, 6, 2, 2),
}


@pytest.mark.parametrize("name", sorted(FLOAT_FUNCTIONS))
def test_something_that_is_not_a_tensor_is_a_type_error_naming_it(name):
    with pytest.raises(TypeError, match="ndarray"):
        FLOAT_FUNCTIONS[name](np.zeros(SHAPES[name], dtype=np.float32))


@pytest.mark.parametrize("name", sorted(FLOAT_FUNCTIONS))
def test_an_integer_tensor_where_floats_are_needed_is_a_value_error_naming_its_dtype(name):
    with pytest.raises(ValueError, match="int64|dtype"):
        FLOAT_FUNCTIONS[name](torch.zeros(SHAPES[name], dtype=torch.int64))


@pytest.mark.parametrize(
    "call",
    [
        lambda: basics.pairwise_squared_distances(np.zeros((2, 3)), torch.zeros(2, 3)),
        lambda: basics.one_hot([0, 1], 3),
        lambda: mlp.cross_entropy(np.zeros((2, 3)), torch.tensor([0, 1])),
    ],
    ids=["pairwise_squared_distances", "one_hot", "cross_entropy"],
)
def test_other_functions_follow_the_same_convention_for_non_tensors(call):
    with pytest.raises(TypeError, match=r"got (ndarray|list)\b"):
        call()
