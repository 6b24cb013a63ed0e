"""Wrong implementations of lab 1's backpropagation (solutions/mlp.py): one edit each.

Each must lose points in its own exercise and in no other (see tests/course/mutation.py).
"""

from tests.course.mutation import WrongImplementation

WRONG = [
    WrongImplementation(
        name="softmax without subtracting the maximum overflows at logits of 1000",
        exercise="1.4",
        module="mlp",
        old="    exp = shifted.exp()\n",
        new="    exp = z.exp()\n",
    ),
    WrongImplementation(
        name="backward pass forgets the ReLU derivative when it passes delta down a layer",
        exercise="1.11",
        module="mlp",
        old="            delta = (delta @ W) * relu_grad(Z[l - 2])  # (N, n_l) @ (n_l, n_{l-1}) -> (N, n_{l-1})\n",
        new="            delta = delta @ W  # (N, n_l) @ (n_l, n_{l-1}) -> (N, n_{l-1})\n",
    ),
]
