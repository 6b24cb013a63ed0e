"""Lab 1, part 1: PyTorch basics.

Three short exercises that practise what notebook 00_pytorch_basics shows: broadcasting
instead of loops, indexing to build tensors, and autograd for one gradient step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_matrix(name: str, value: Tensor, columns: int | None = None) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} expected a matrix of shape (N, D), got shape {tuple(value.shape)}")
    if columns is not None and value.shape[1] != columns:
        raise ValueError(f"{name} expected {columns} columns to match the other input, got shape {tuple(value.shape)}")


def pairwise_squared_distances(X: Tensor, Y: Tensor) -> Tensor:
    """Squared Euclidean distance between every row of X and every row of Y, without loops.

    D[i, j] = sum_k (X[i, k] - Y[j, k])^2

    Args:
        X: (N, D) tensor.
        Y: (M, D) tensor, same D and dtype.

    Returns:
        (N, M) tensor of squared distances, exact (no ||x||^2 - 2x.y + ||y||^2 cancellation).

    Raises:
        ValueError: X or Y is not a matrix, or their numbers of columns differ.

    Written by hand (exercise 1.1; the grader reads your source): broadcasting, indexing,
    elementwise operations and reductions are allowed (torch.linalg.vector_norm included);
    torch.cdist, torch.pdist, F.pairwise_distance and nn.PairwiseDistance are not.
    """
    _check_matrix("X", X)
    _check_matrix("Y", Y, columns=X.shape[1])
    # BEGIN SOLUTION 1.1: Pairwise squared distances by broadcasting
    # HINT: give X a new axis at position 1 and Y one at position 0, then subtract.
    differences = X[:, None, :] - Y[None, :, :]  # (N, 1, D) - (1, M, D) -> (N, M, D)
    return (differences**2).sum(dim=-1)  # (N, M, D) -> (N, M)
    # END SOLUTION


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    """One-hot encode integer class labels.

    Args:
        y: (N,) integer tensor with values in [0, num_classes).
        num_classes: number of classes C.

    Returns:
        (N, C) float32 tensor with Y[i, y[i]] = 1 and zeros elsewhere, on y's device.

    Raises:
        TypeError: y is not a tensor.
        ValueError: y is not a 1D integer tensor, or a label lies outside [0, num_classes).

    Written by hand (exercise 1.2; the grader reads your source): torch.zeros with advanced
    indexing, scatter_, comparisons with torch.arange and torch.eye(C)[y] are allowed; F.one_hot
    is not.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"one_hot expected y to be a torch.Tensor of labels, got {type(y).__name__}")
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"one_hot expected a 1D integer tensor of labels, got dtype {y.dtype} and shape {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"one_hot expected labels in [0, {num_classes}), got values from {int(y.min())} to {int(y.max())}")
    # BEGIN SOLUTION 1.2: One-hot encoding
    # HINT: start from zeros of shape (N, C) and write ones with advanced indexing.
    Y = torch.zeros(y.shape[0], num_classes, device=y.device)  # (N, C)
    Y[torch.arange(y.shape[0], device=y.device), y] = 1.0
    return Y
    # END SOLUTION


def linear_regression_step(w: Tensor, b: Tensor, X: Tensor, y: Tensor, lr: float) -> tuple[Tensor, Tensor, float]:
    """One step of gradient descent on the mean squared error, gradients from autograd.

    loss = mean_i (X[i] @ w + b - y[i])^2

    Args:
        w: (D,) weights, a leaf tensor with requires_grad=True.
        b: () bias, a leaf tensor with requires_grad=True.
        X: (N, D) inputs.
        y: (N,) targets.
        lr: learning rate.

    Returns:
        (w_new, b_new, loss): new leaf tensors with requires_grad=True (w - lr * dL/dw and
        b - lr * dL/db), and the loss before the step as a Python float. The inputs w and b are
        left unchanged and their .grad is not accumulated across calls.
    """
    _check_matrix("X", X)
    if w.shape != (X.shape[1],) or b.dim() != 0 or y.shape != (X.shape[0],):
        raise ValueError(
            f"expected w of shape ({X.shape[1]},), a scalar b and y of shape ({X.shape[0]},) for X of shape "
            f"{tuple(X.shape)}; got w {tuple(w.shape)}, b {tuple(b.shape)}, y {tuple(y.shape)}"
        )
    if not (w.requires_grad and b.requires_grad):
        raise ValueError("w and b must have requires_grad=True so that autograd can differentiate the loss")
    # BEGIN SOLUTION 1.3: A linear regression step with autograd
    # HINT: torch.autograd.grad(loss, (w, b)) returns the gradients without touching .grad;
    # HINT: build the new tensors under torch.no_grad(), then call .requires_grad_().
    loss = ((X @ w + b - y) ** 2).mean()  # (N, D) @ (D,) -> (N,)
    dw, db = torch.autograd.grad(loss, (w, b))
    with torch.no_grad():
        w_new = (w - lr * dw).requires_grad_()
        b_new = (b - lr * db).requires_grad_()
    return w_new, b_new, loss.item()
    # END SOLUTION
