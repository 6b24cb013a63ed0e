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
    WrongImplementation(
        name="softmax shifts its input in place, changing the caller's logits",
        exercise="1.4",
        module="mlp",
        old="    shifted = z - z.amax(dim=dim, keepdim=True)  # (..., C, ...) - (..., 1, ...) broadcasts along dim\n    exp = shifted.exp()\n",
        new="    shifted = z.sub_(z.amax(dim=dim, keepdim=True))  # in place (wrong)\n    exp = shifted.exp()\n",
        says="changed its argument z in place",
    ),
    WrongImplementation(
        name="relu built on clamp_ changes its input in place",
        exercise="1.8",
        module="mlp",
        old="    return z.clamp_min(0.0)\n",
        new="    return z.clamp_min_(0.0)\n",
        says="changed its argument z in place",
    ),
]
