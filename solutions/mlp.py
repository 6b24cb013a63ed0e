"""Lab 1, part 2: softmax, cross-entropy and backpropagation by hand.

A multilayer perceptron trained without autograd, in the lecture's notation
(Rumelhart, Hinton and Williams 1986; He et al. 2015 for the initialisation):

    z_l = W_l a_{l-1} + b_l,    a_l = sigma_l(z_l),    l = 1..L,    a_0 = x

with W_l of shape (n_l, n_{l-1}). A batch X holds one example per row, shape (N, n_0), so a
layer computes Z_l = A_{l-1} @ W_l.T + b_l, shape (N, n_l). Hidden layers use ReLU; the last
layer is linear and its outputs (the logits) go to softmax and cross-entropy.

Primitives first (softmax, cross-entropy and their gradients, activations), the network
last (initialisation, forward, backward, SGD), then the tools that check and cost it
(finite differences, FLOPs and memory).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

Params = list[tuple[Tensor, Tensor]]  # [(W_1, b_1), ..., (W_L, b_L)], W_l (n_l, n_{l-1}), b_l (n_l,)
Cache = tuple[list[Tensor], list[Tensor]]  # ([A_0, ..., A_{L-1}], [Z_1, ..., Z_{L-1}])


# ---------------------------------------------------------------- input checks (provided)


def _check_float(name: str, value: Tensor, what: str = "a floating-point tensor") -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} expected {what}, got {type(value).__name__}")
    if not value.dtype.is_floating_point:
        raise ValueError(f"{name} expected {what}, got dtype {value.dtype}")


def _check_dim(name: str, z: Tensor, dim: int) -> None:
    _check_float(name, z, "a floating-point tensor of logits")
    if z.dim() == 0:
        raise ValueError(f"{name} expected a tensor with at least one dimension, got a scalar")
    if not -z.dim() <= dim < z.dim():
        raise ValueError(f"{name} expected dim in [{-z.dim()}, {z.dim()}) for a tensor of shape {tuple(z.shape)}, got {dim}")


def _check_classification(name: str, logits: Tensor, targets: Tensor) -> None:
    """Logits (N, C) floating point and targets (N,) integers in [0, C)."""
    _check_float(name, logits, "floating-point logits of shape (N, C)")
    if logits.dim() != 2:
        raise ValueError(f"{name} expected logits of shape (N, C), got shape {tuple(logits.shape)}")
    if not isinstance(targets, Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        got = f"dtype {targets.dtype}" if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"{name} expected integer class targets (e.g. torch.int64) of shape (N,), got {got}")
    if targets.dim() != 1:
        raise ValueError(f"{name} expected targets of shape (N,), got shape {tuple(targets.shape)}")
    N, C = logits.shape
    if targets.shape[0] != N:
        raise ValueError(f"{name} expected {N} targets to match logits of shape {tuple(logits.shape)}, got {targets.shape[0]}")
    if N == 0:
        raise ValueError(f"{name} expected a batch of at least one example, got logits of shape {tuple(logits.shape)}")
    if targets.min() < 0 or targets.max() >= C:
        raise ValueError(f"{name} expected targets in [0, {C}) for {C} classes, got values from {int(targets.min())} to {int(targets.max())}")


def _check_sizes(name: str, sizes) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
        raise ValueError(f"{name} expected layer sizes [n_0, n_1, ..., n_L]: at least two positive integers, got {sizes}")
    return sizes


def _check_params(name: str, params: Params) -> None:
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise ValueError(f"{name} expected a non-empty list of (W, b) pairs, got {type(params).__name__} {params!r:.60}")
    for l, pair in enumerate(params, start=1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{name} expected layer {l} as a pair (W, b), got {type(pair).__name__}")
        W, b = pair
        _check_float(f"{name} (W_{l})", W)
        _check_float(f"{name} (b_{l})", b)
        if W.dim() != 2 or b.shape != (W.shape[0],):
            raise ValueError(f"{name} expected W_{l} of shape (n_{l}, n_{l - 1}) and b_{l} of shape (n_{l},), got W {tuple(W.shape)} and b {tuple(b.shape)}")
        if l > 1 and W.shape[1] != params[l - 2][0].shape[0]:
            raise ValueError(
                f"{name} expected W_{l} to have {params[l - 2][0].shape[0]} columns (the outputs of layer {l - 1}), got shape {tuple(W.shape)}"
            )


# ---------------------------------------------------------------- 1.4 softmax


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim`: p_i = exp(z_i) / sum_j exp(z_j), stable for any finite logits.

    Softmax does not change when a constant is added to every logit, so subtracting the
    maximum first keeps every exponent <= 0: exp never overflows and the denominator is >= 1.

    Args:
        z: logits of any shape, floating point, e.g. (N, C).
        dim: the dimension that holds the classes.

    Returns:
        Probabilities, same shape and dtype as z, non-negative and summing to 1 along `dim`.

    Written by hand (exercise 1.4; the grader reads your source): exp, log, amax/max, sum and
    subtraction are allowed; torch.softmax, F.softmax, log_softmax in any spelling (tensor
    methods, torch.special, nn.Softmax), attention (a softmax of scores), torch.distributions,
    logsumexp, logcumsumexp and autograd (softmax is the gradient of logsumexp) are not:
    logsumexp is the stable shift this exercise teaches.
    """
    _check_dim("softmax", z, dim)
    # BEGIN SOLUTION 1.4: Softmax and log-softmax
    # HINT: subtract the maximum along `dim` first (keepdim=True): exp(1000) overflows.
    shifted = z - z.amax(dim=dim, keepdim=True)  # (..., C, ...) - (..., 1, ...) broadcasts along dim
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)  # (..., C, ...) / (..., 1, ...)
    # END SOLUTION


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Log of the softmax along `dim`: log p_i = z_i - log sum_j exp(z_j) (log-sum-exp).

    Computed as (z_i - m) - log sum_j exp(z_j - m) with m = max_j z_j, never as log(softmax(z)):
    a probability that underflows to 0 would give -inf, while the log-sum-exp form stays finite.

    Args:
        z: logits of any shape, floating point, e.g. (N, C).
        dim: the dimension that holds the classes.

    Returns:
        Log-probabilities, same shape and dtype as z, all <= 0 and finite for finite z.

    Written by hand, as exercise 1.4: see `softmax` for what it may use.
    """
    _check_dim("log_softmax", z, dim)
    # BEGIN SOLUTION 1.4
    # HINT: the same shift as softmax; then subtract the log of the sum of exponentials.
    shifted = z - z.amax(dim=dim, keepdim=True)  # (..., C, ...) - (..., 1, ...) broadcasts along dim
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()  # (..., C, ...) - (..., 1, ...)
    # END SOLUTION


# ---------------------------------------------------------------- 1.5 cross-entropy


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of a batch, from logits: L = -(1/N) sum_i log softmax(z_i)[y_i].

    Equal to torch.nn.functional.cross_entropy(logits, targets) (reduction "mean").

    Args:
        logits: (N, C) floating point, one row of class scores per example.
        targets: (N,) integer class indices in [0, C).

    Returns:
        A scalar tensor (shape ()), same dtype as logits; finite for any finite logits.

    Raises:
        ValueError: logits not (N, C), targets not N integers, or a target outside [0, C).

    Written by hand (exercise 1.5; the grader reads your source): your own log_softmax, advanced
    indexing, gather, F.one_hot and mean are allowed; the softmax family, logsumexp, autograd,
    F.cross_entropy, F.nll_loss, F.kl_div and the nn loss modules are not.
    """
    _check_classification("cross_entropy", logits, targets)
    # BEGIN SOLUTION 1.5: Cross-entropy from logits
    # HINT: use your log_softmax (not log of softmax), then pick each row's target entry
    # HINT: with advanced indexing: log_p[torch.arange(N), targets].
    N = logits.shape[0]
    log_p = log_softmax(logits, dim=1)  # (N, C)
    picked = log_p[torch.arange(N, device=logits.device), targets]  # (N,)
    return -picked.mean()
    # END SOLUTION


# ---------------------------------------------------------------- 1.6 gradient of cross-entropy


def cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """Gradient of the mean cross-entropy with respect to the logits: (P - Y) / N.

    With p_i = softmax(z_i) and y_i the one-hot target of row i, dL/dz_i = (p_i - y_i) / N:
    the lecture's "p - y", divided by N because the loss is a mean over the batch.

    Args:
        logits: (N, C) floating point.
        targets: (N,) integer class indices in [0, C).

    Returns:
        (N, C) tensor, same dtype as logits; each row sums to 0.

    Raises:
        ValueError: as for cross_entropy.

    Written by hand (exercise 1.6; the grader reads your source): your own softmax, zeros_like
    with indexing, scatter_ and F.one_hot are allowed; the softmax and cross-entropy families
    and autograd (.backward, torch.autograd.*, torch.func, requires_grad) are not.
    """
    _check_classification("cross_entropy_grad", logits, targets)
    # BEGIN SOLUTION 1.6: Gradient of cross-entropy
    # HINT: start from your softmax(logits, dim=1); subtract 1 at each row's target; divide by N.
    N = logits.shape[0]
    P = softmax(logits, dim=1)  # (N, C)
    Y = torch.zeros_like(P)  # (N, C)
    Y[torch.arange(N, device=logits.device), targets] = 1.0
    return (P - Y) / N  # (N, C)
    # END SOLUTION


# ---------------------------------------------------------------- 1.7 softmax Jacobian


def softmax_jacobian(z: Tensor) -> Tensor:
    """Jacobian of softmax at a vector z: J[i, j] = dp_i/dz_j = p_i (delta_ij - p_j).

    In matrix form J = diag(p) - p p^T: symmetric, and each row and column sums to 0 (adding
    a constant to every logit changes nothing).

    Args:
        z: (C,) floating-point vector of logits.

    Returns:
        (C, C) tensor, same dtype as z.

    Raises:
        ValueError: z is not a 1D floating-point tensor.

    Written by hand (exercise 1.7; the grader reads your source): your own softmax, torch.diag,
    torch.diag_embed, torch.outer and torch.eye are allowed; the softmax family and autograd
    (torch.autograd.functional.jacobian, torch.func.jacrev/jacfwd) are not.
    """
    _check_float("softmax_jacobian", z, "a floating-point vector of logits of shape (C,)")
    if z.dim() != 1:
        raise ValueError(f"softmax_jacobian expected a vector of logits of shape (C,), got shape {tuple(z.shape)}")
    # BEGIN SOLUTION 1.7: Softmax Jacobian
    # HINT: p = softmax(z); torch.diag builds diag(p) and torch.outer builds p p^T.
    p = softmax(z, dim=0)  # (C,)
    return torch.diag(p) - torch.outer(p, p)  # (C, C) - (C, 1)(1, C)
    # END SOLUTION


# ---------------------------------------------------------------- 1.8 activations


def relu(z: Tensor) -> Tensor:
    """ReLU, elementwise: max(z, 0). Same shape and dtype as z.

    Written by hand (exercise 1.8; the grader reads your source): clamp, clamp_min, maximum,
    where, comparisons, exp, expm1, log1p, logaddexp, abs and sign are allowed; the library's
    relu, sigmoid and tanh in any spelling (torch.*, F.*, nn.*, tensor methods,
    torch.special.expit, math.tanh), the activations that reduce to them (threshold, hardtanh,
    elu, softplus, silu, logsigmoid, glu), softmax (a two-class softmax is a sigmoid) and
    autograd are not.
    """
    _check_float("relu", z)
    # BEGIN SOLUTION 1.8: Activations and their derivatives
    # HINT: torch.clamp or torch.where; do not call torch.relu.
    return z.clamp_min(0.0)
    # END SOLUTION


def relu_grad(z: Tensor) -> Tensor:
    """Derivative of ReLU with respect to its input z: 1 where z > 0, else 0.

    At z = 0 ReLU has no derivative; like PyTorch's autograd we take 0 there.

    Args:
        z: pre-activations, any shape.

    Returns:
        Tensor of 0s and 1s, same shape and dtype as z.

    Written by hand, as exercise 1.8: see `relu` for what it may use.
    """
    _check_float("relu_grad", z)
    # BEGIN SOLUTION 1.8
    return (z > 0).to(z.dtype)
    # END SOLUTION


def sigmoid(z: Tensor) -> Tensor:
    """Logistic sigmoid, elementwise: 1 / (1 + exp(-z)), in [0, 1], no overflow warnings for large |z|.

    Written by hand, as exercise 1.8: see `relu` for what it may use.
    """
    _check_float("sigmoid", z)
    # BEGIN SOLUTION 1.8
    # HINT: exp(-|z|) lies in (0, 1]: 1/(1+e) for z >= 0 and e/(1+e) for z < 0 never overflow.
    e = torch.exp(-z.abs())
    return torch.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    # END SOLUTION


def sigmoid_grad(z: Tensor) -> Tensor:
    """Derivative of the sigmoid with respect to z: sigma(z) (1 - sigma(z)). Same shape as z.

    Written by hand, as exercise 1.8: see `relu` for what it may use.
    """
    _check_float("sigmoid_grad", z)
    # BEGIN SOLUTION 1.8
    s = sigmoid(z)
    return s * (1.0 - s)
    # END SOLUTION


def tanh(z: Tensor) -> Tensor:
    """Hyperbolic tangent, elementwise: (e^z - e^-z) / (e^z + e^-z), in [-1, 1]. Same shape as z.

    Written by hand, as exercise 1.8: see `relu` for what it may use.
    """
    _check_float("tanh", z)
    # BEGIN SOLUTION 1.8
    # HINT: with e = exp(-2|z|), tanh(z) = sign(z) (1 - e) / (1 + e) never overflows.
    e = torch.exp(-2.0 * z.abs())
    return torch.sign(z) * (1.0 - e) / (1.0 + e)
    # END SOLUTION


def tanh_grad(z: Tensor) -> Tensor:
    """Derivative of tanh with respect to z: 1 - tanh(z)^2. Same shape as z.

    Written by hand, as exercise 1.8: see `relu` for what it may use.
    """
    _check_float("tanh_grad", z)
    # BEGIN SOLUTION 1.8
    t = tanh(z)
    return 1.0 - t * t
    # END SOLUTION


# ---------------------------------------------------------------- 1.9 initialisation


def init_mlp(
    sizes: list[int],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Params:
    """Random parameters for an MLP with layer sizes [n_0, n_1, ..., n_L].

    Initialisation, for each layer l = 1..L, drawn on the CPU from `generator`:
        W_l ~ Normal(0, 2 / n_{l-1}) for hidden layers, which a ReLU follows (He et al. 2015:
              it keeps the mean square of the activations constant from layer to layer);
        W_L ~ Normal(0, 1 / n_{L-1}) for the linear output layer (LeCun et al. 1998);
        b_l = 0.
    Weights are drawn layer by layer, W_1 first, with torch.randn(..., generator=generator).

    Args:
        sizes: [n_0, ..., n_L], at least two positive integers (input size first, classes last).
        generator: a torch.Generator for reproducible draws (default: torch's global one).
        dtype: floating-point dtype of the parameters.
        device: where to put the parameters (default: CPU).

    Returns:
        [(W_1, b_1), ..., (W_L, b_L)] with W_l of shape (n_l, n_{l-1}) and b_l of shape (n_l,),
        plain tensors (requires_grad=False).

    Raises:
        ValueError: sizes are not at least two positive integers.
    """
    sizes = _check_sizes("init_mlp", sizes)
    # BEGIN SOLUTION 1.9: Initialising an MLP
    # HINT: torch.randn(n_out, n_in, generator=generator, dtype=dtype) * std, then .to(device).
    params = []
    L = len(sizes) - 1
    for l in range(1, L + 1):
        n_in, n_out = sizes[l - 1], sizes[l]
        gain = 2.0 if l < L else 1.0  # ReLU halves the mean square; the output layer has none
        W = torch.randn(n_out, n_in, generator=generator, dtype=dtype) * math.sqrt(gain / n_in)  # (n_l, n_{l-1})
        b = torch.zeros(n_out, dtype=dtype)  # (n_l,)
        params.append((W.to(device), b.to(device)))
    return params
    # END SOLUTION


# ---------------------------------------------------------------- 1.10 forward pass


def mlp_forward(params: Params, X: Tensor) -> tuple[Tensor, Cache]:
    """Forward pass of the MLP: ReLU hidden layers, a linear last layer.

        A_0 = X;   Z_l = A_{l-1} @ W_l.T + b_l;   A_l = relu(Z_l) for l < L;   logits = Z_L

    Args:
        params: [(W_1, b_1), ..., (W_L, b_L)] as from init_mlp, W_l of shape (n_l, n_{l-1}).
        X: (N, n_0) inputs, one example per row, same dtype as the parameters.

    Returns:
        logits: (N, n_L) = Z_L.
        cache: (A, Z), what the backward pass needs and nothing more:
            A = [A_0, A_1, ..., A_{L-1}], the input of every layer, A_{l-1} of shape (N, n_{l-1})
                (A_0 is X itself);
            Z = [Z_1, ..., Z_{L-1}], the pre-activation of every hidden layer, Z_l of shape (N, n_l).
        So A has L entries and Z has L - 1 (empty for a single linear layer).

    Raises:
        ValueError: the parameters do not chain, or X does not have n_0 columns.
    """
    _check_params("mlp_forward", params)
    _check_float("mlp_forward", X, "floating-point inputs X of shape (N, n_0)")
    n_0 = params[0][0].shape[1]
    if X.dim() != 2 or X.shape[1] != n_0:
        raise ValueError(f"mlp_forward expected X of shape (N, {n_0}) for a first layer with {n_0} inputs, got shape {tuple(X.shape)}")
    # BEGIN SOLUTION 1.10: Forward pass
    # HINT: loop over the layers; keep each layer's input in A and each hidden Z; use your relu.
    A, Z = [X], []
    for W, b in params[:-1]:
        Z_l = A[-1] @ W.T + b  # (N, n_{l-1}) @ (n_{l-1}, n_l) + (n_l,) -> (N, n_l)
        Z.append(Z_l)
        A.append(relu(Z_l))  # (N, n_l)
    W_L, b_L = params[-1]
    logits = A[-1] @ W_L.T + b_L  # (N, n_{L-1}) @ (n_{L-1}, n_L) + (n_L,) -> (N, n_L)
    return logits, (A, Z)
    # END SOLUTION


# ---------------------------------------------------------------- 1.11 backward pass


def mlp_backward(params: Params, cache: Cache, dlogits: Tensor) -> Params:
    """Backward pass (the lecture's Algorithm 1): gradients of the loss for every W_l and b_l.

    With deltas delta_l = dLoss/dZ_l, of shape (N, n_l), for rows as examples:
        delta_L = dlogits
        dW_l = delta_l^T A_{l-1}                      (n_l, n_{l-1})
        db_l = sum over the batch of delta_l          (n_l,)
        delta_{l-1} = (delta_l W_l) * relu'(Z_{l-1})  (N, n_{l-1}), for l = L..2
    Each weight's gradient sums its examples' contributions; the 1/N of a mean loss is already
    inside dlogits (see cross_entropy_grad).

    Args:
        params: [(W_1, b_1), ..., (W_L, b_L)], as given to mlp_forward.
        cache: (A, Z) as returned by mlp_forward for the same params.
        dlogits: (N, n_L) gradient of the loss with respect to the logits.

    Returns:
        [(dW_1, db_1), ..., (dW_L, db_L)], each the shape of its parameter.

    Raises:
        ValueError: dlogits or the cache does not match the parameters.

    Written by hand (exercise 1.11; the grader reads your source): matrix products, transposes,
    sums and your relu_grad are allowed; autograd (.backward, torch.autograd.*, torch.func,
    requires_grad=True, .grad_fn) is not.
    """
    _check_params("mlp_backward", params)
    A, Z = cache
    if len(A) != len(params) or len(Z) != len(params) - 1:
        raise ValueError(
            f"mlp_backward expected a cache (A, Z) with {len(params)} layer inputs and {len(params) - 1} hidden "
            f"pre-activations for {len(params)} layers, got {len(A)} and {len(Z)}"
        )
    _check_float("mlp_backward", dlogits, "floating-point dlogits of shape (N, n_L)")
    expected = (A[0].shape[0], params[-1][0].shape[0])
    if tuple(dlogits.shape) != expected:
        raise ValueError(f"mlp_backward expected dlogits of shape (N, n_L) = {expected}, got shape {tuple(dlogits.shape)}")
    # BEGIN SOLUTION 1.11: Backward pass
    # HINT: walk the layers from last to first; dW_l needs delta_l and A_{l-1}; the next delta
    # HINT: needs W_l and relu_grad(Z_{l-1}) from exercise 1.8.
    grads: Params = [None] * len(params)  # type: ignore[list-item]
    delta = dlogits  # (N, n_L)
    for l in range(len(params), 0, -1):
        W, _ = params[l - 1]  # W_l: (n_l, n_{l-1})
        dW = delta.T @ A[l - 1]  # (n_l, N) @ (N, n_{l-1}) -> (n_l, n_{l-1})
        db = delta.sum(dim=0)  # (N, n_l) -> (n_l,)
        grads[l - 1] = (dW, db)
        if l > 1:
            delta = (delta @ W) * relu_grad(Z[l - 2])  # (N, n_l) @ (n_l, n_{l-1}) -> (N, n_{l-1})
    return grads
    # END SOLUTION


# ---------------------------------------------------------------- 1.12 SGD


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """One step of gradient descent: W_l <- W_l - lr dW_l and b_l <- b_l - lr db_l.

    Args:
        params: [(W_1, b_1), ..., (W_L, b_L)].
        grads: [(dW_1, db_1), ..., (dW_L, db_L)], the same shapes.
        lr: learning rate (a positive float).

    Returns:
        New parameters [(W_1', b_1'), ...]; `params` is left unchanged.

    Raises:
        ValueError: grads do not match params in number or shape, or lr is not positive.
    """
    if len(grads) != len(params):
        raise ValueError(f"sgd_step expected one (dW, db) pair per layer: {len(params)} layers, got {len(grads)} gradient pairs")
    for l, ((W, b), (dW, db)) in enumerate(zip(params, grads), start=1):
        if dW.shape != W.shape or db.shape != b.shape:
            raise ValueError(
                f"sgd_step expected gradients shaped like layer {l}'s parameters, W {tuple(W.shape)} and b {tuple(b.shape)}; "
                f"got dW {tuple(dW.shape)} and db {tuple(db.shape)}"
            )
    if not lr > 0:
        raise ValueError(f"sgd_step expected a positive learning rate, got {lr}")
    # BEGIN SOLUTION 1.12: SGD step
    return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    # END SOLUTION


# ---------------------------------------------------------------- 1.13 finite differences


def numerical_gradient(f: Callable[[Tensor], Tensor | float], x: Tensor, eps: float = 1e-6) -> Tensor:
    """Gradient of a scalar function by central differences, one coordinate at a time.

        g_i = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

    The error is O(eps^2) (the even Taylor terms cancel), against O(eps) for a one-sided
    difference; use float64, since rounding error grows like 1e-16 / eps.

    Args:
        f: maps a tensor shaped like x to a scalar (a Python float or a one-element tensor).
        x: the point, any shape, floating point (float64 recommended). Not modified.
        eps: the step.

    Returns:
        Tensor of x's shape and dtype: the estimated gradient df/dx. Calls f 2 * x.numel() times.

    Raises:
        ValueError: x is not floating point, eps is not positive, or f(x) is not a scalar.
    """
    _check_float("numerical_gradient", x, "a floating-point tensor x (float64 recommended)")
    if not eps > 0:
        raise ValueError(f"numerical_gradient expected a positive step eps, got {eps}")
    value = f(x.detach().clone())
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(f"numerical_gradient expected f to return a scalar, got a tensor of shape {tuple(value.shape)}")
    # BEGIN SOLUTION 1.13: Numerical gradient
    # HINT: work on a detached copy; nudge one entry of a flat view up, then down, then restore it.
    point = x.detach().clone()
    flat = point.view(-1)  # (x.numel(),), shares storage with point
    grad = torch.zeros_like(flat)  # (x.numel(),)
    for i in range(flat.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        f_plus = float(f(point))
        flat[i] = original - eps
        f_minus = float(f(point))
        flat[i] = original
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad.view(x.shape)  # (x.numel(),) -> x.shape
    # END SOLUTION


# ---------------------------------------------------------------- 1.14 cost of backprop


def mlp_flops(sizes: list[int]) -> int:
    """Floating-point operations of one forward pass, for one input, through the MLP `sizes`.

    Counting, for each layer l = 1..L, the affine map z_l = W_l a_{l-1} + b_l exactly: each of
    the n_l outputs needs n_{l-1} multiplications and n_{l-1} additions (n_{l-1} - 1 inside the
    dot product, plus the bias), so the layer costs 2 n_{l-1} n_l FLOPs:

        FLOPs = sum_{l=1}^{L} 2 n_{l-1} n_l        (the lecture's Theta(sum n_{l-1} n_l))

    ReLU is a comparison, not arithmetic, and is not counted. The same convention as
    torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add). A batch of N inputs
    costs N times as much; the backward pass costs about twice as much again.

    Args:
        sizes: [n_0, ..., n_L], at least two positive integers.

    Returns:
        The number of FLOPs, an int.
    """
    sizes = _check_sizes("mlp_flops", sizes)
    # BEGIN SOLUTION 1.14: Cost of backprop
    return sum(2 * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    # END SOLUTION


def mlp_activation_memory(sizes: list[int], batch_size: int) -> int:
    """Number of values mlp_forward stores for the backward pass (its cache), for a batch.

    The cache holds every layer's input A_0 .. A_{L-1} (needed for dW_l = delta_l^T A_{l-1})
    and every hidden pre-activation Z_1 .. Z_{L-1} (needed for relu'(Z_l)):

        memory = N (n_0 + 2 sum_{l=1}^{L-1} n_l)      values (multiply by 4 for float32 bytes)

    It grows linearly with the batch size and with depth, unlike the parameter count
    sum n_{l-1} n_l, which does not depend on N.

    Args:
        sizes: [n_0, ..., n_L], at least two positive integers.
        batch_size: N, a positive integer.

    Returns:
        The number of stored values, an int.
    """
    sizes = _check_sizes("mlp_activation_memory", sizes)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"mlp_activation_memory expected a positive integer batch_size, got {batch_size!r}")
    # BEGIN SOLUTION 1.14
    return batch_size * (sizes[0] + 2 * sum(sizes[1:-1]))
    # END SOLUTION
