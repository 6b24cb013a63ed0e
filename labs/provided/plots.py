"""Plots for the notebooks and the recipes: curves, image grids, filters, feature maps, confusion matrices.

Every function draws a new matplotlib Figure and returns it; none calls plt.show(). The figure
is closed in pyplot's registry before it is returned, so a notebook shows it exactly once, as
the value of the cell (end the cell with the call, or with the variable holding the figure),
and loops that draw hundreds of figures leak none. In a script, save it:

    fig = plot_history(history, title="LeNet-5 on MNIST")
    fig.savefig("runs/lenet-curves.png", dpi=120, bbox_inches="tight")

Images and weights may be torch tensors (any device, any dtype, with or without grad) or
NumPy arrays, in PyTorch's layouts: images (N, C, H, W), weights (C_out, C_in, kH, kW).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

CORRECT, WRONG = "tab:green", "tab:red"
SEPARATOR = 1  # pixels of background between tiles in a mosaic


def _numpy(values) -> np.ndarray:
    """A float64 NumPy copy of a tensor, an array or a list (tensors leave their device and graph)."""
    if hasattr(values, "detach"):
        values = values.detach().to("cpu")
        if not values.dtype.is_floating_point:
            return values.numpy().astype(np.float64)
        return values.double().numpy()
    return np.asarray(values, dtype=np.float64)


def _close(fig: Figure) -> Figure:
    """Take the figure out of pyplot's registry (see the module docstring) and return it."""
    plt.close(fig)
    return fig


def _rescale(tile: np.ndarray) -> np.ndarray:
    """Linearly map a tile's values onto [0, 1] (a constant tile becomes mid-grey)."""
    low, high = np.nanmin(tile), np.nanmax(tile)
    if not np.isfinite(low) or not np.isfinite(high) or high - low < 1e-12:
        return np.full_like(tile, 0.5)
    return (tile - low) / (high - low)


def _mosaic(tiles: np.ndarray, ncols: int) -> np.ndarray:
    """Lay out tiles (T, h, w) or (T, h, w, 3) in a grid of `ncols` columns, separated by NaN (drawn as background)."""
    count, h, w = tiles.shape[:3]
    nrows = math.ceil(count / ncols)
    step_h, step_w = h + SEPARATOR, w + SEPARATOR
    canvas = np.full((nrows * step_h - SEPARATOR, ncols * step_w - SEPARATOR, *tiles.shape[3:]), np.nan)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, ncols)
        canvas[row * step_h : row * step_h + h, col * step_w : col * step_w + w] = tile
    return canvas


def _show_mosaic(ax, canvas: np.ndarray, cmap: str = "gray", background: str = "white") -> None:
    """Draw a mosaic: one-channel tiles with `cmap`, RGB tiles as they are; separators in `background`."""
    if canvas.ndim == 3:  # RGB: NaN separators take the background colour
        ax.imshow(np.where(np.isnan(canvas), np.array(matplotlib.colors.to_rgb(background)), canvas), interpolation="nearest")
    else:
        colormap = plt.get_cmap(cmap).with_extremes(bad=background)
        ax.imshow(np.ma.masked_invalid(canvas), cmap=colormap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- training curves


def _values_or_nan(values: Sequence) -> np.ndarray:
    """Per-epoch values as floats; None (an epoch without evaluation) becomes NaN, a gap in the curve."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def plot_history(history: Mapping[str, Sequence[float]], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training and test, side by side.

    Args:
        history: lists of per-epoch values, as `labs.provided.training.fit` returns them:
            {"train_loss": [...], "train_acc": [...], "test_loss": [...], "test_acc": [...]}.
            Any key ending in "loss" goes on the loss plot and any ending in "acc" or
            "accuracy" on the accuracy plot (in %, from fractions in [0, 1]); other keys
            (epoch_seconds, images_per_s) are ignored, missing ones skipped, NaN left as gaps.
        title: the figure's title, e.g. "LeNet-5 on MNIST".

    Returns:
        A Figure with one axes per kind present: "Loss" and "Accuracy" (one of them if the
        history holds only losses or only accuracies).

    Raises:
        ValueError: the history holds no loss and no accuracy.
    """
    kinds = {"Loss": [], "Accuracy": []}
    for key, values in history.items():
        if values is None or len(values) == 0:
            continue
        if key.endswith("loss"):
            kinds["Loss"].append(key)
        elif key.endswith("acc") or key.endswith("accuracy"):
            kinds["Accuracy"].append(key)
    kinds = {kind: keys for kind, keys in kinds.items() if keys}
    if not kinds:
        raise ValueError(f"plot_history expected lists under keys such as 'train_loss' or 'test_acc', got keys {sorted(history)}")
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.8), layout="constrained", squeeze=False)
    for ax, (kind, keys) in zip(axes[0], kinds.items()):
        for key in sorted(keys, key=lambda k: (not k.startswith("train"), k)):  # train first, in blue
            values = _values_or_nan(history[key])
            if kind == "Accuracy" and np.nanmax(values, initial=0.0) <= 1.0:
                values = 100.0 * values
            epochs = np.arange(1, len(values) + 1)
            label = key.rsplit("_", 1)[0] if "_" in key else key
            finite = values[np.isfinite(values)]
            if len(finite):
                label += f" (last {finite[-1]:.2f}%)" if kind == "Accuracy" else f" (last {finite[-1]:.4f})"
            ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, markersize=4, label=label)
        ax.set_title(kind)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if kind == "Loss" else "accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _close(fig)


# ----------------------------------------------------------------------------- images


def _images_hwc(images) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) images -> (N, H, W) grey or (N, H, W, 3) RGB, values in [0, 1].

    uint8 images are divided by 255; float images already in [0, 1] are kept; any others
    (e.g. normalised by mean and std) are rescaled to [0, 1] image by image.
    """
    is_uint8 = str(getattr(images, "dtype", "")).endswith("uint8")
    array = _numpy(images)
    if array.ndim == 3:
        array = array[:, None]  # (N, H, W) -> (N, 1, H, W)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1, H, W) or (N, 3, H, W), got {tuple(array.shape)}")
    if is_uint8:
        array = array / 255.0
    elif array.size and (array.min() < 0.0 or array.max() > 1.0):
        array = np.stack([_rescale(image) for image in array])  # (N, C, H, W), each in [0, 1]
    if array.shape[1] == 1:
        return array[:, 0]  # (N, H, W)
    return array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)


def _class_name(index: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[index]) if class_names is not None and 0 <= index < len(class_names) else str(index)


def show_images(
    images,
    labels=None,
    predictions=None,
    ncols: int = 8,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    max_images: int = 64,
) -> Figure:
    """A grid of images (MNIST digits in grey, CIFAR-10 in colour), with labels and predictions.

    Args:
        images: (N, C, H, W) with C = 1 or 3, or (N, H, W); uint8 or float.
        labels: (N,) true classes, shown above each image.
        predictions: (N,) predicted classes: the title reads "pred / true", green when they
            agree and red when they do not (with labels), or just the prediction.
        ncols: images per row.
        title: the figure's title.
        class_names: names for the class indices, e.g. CIFAR-10's ("airplane", ...).
        max_images: draw at most this many (the first ones).

    Returns:
        A Figure with one axes per image drawn.
    """
    pictures = _images_hwc(images)[:max_images]
    count = len(pictures)
    if count == 0:
        raise ValueError("show_images got no images")
    labels = None if labels is None else _numpy(labels).astype(int)[:count]
    predictions = None if predictions is None else _numpy(predictions).astype(int)[:count]
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    captions = labels is not None or predictions is not None
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, (1.3 + 0.3 * captions) * nrows + 0.4 * bool(title)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= count:
            fig.delaxes(ax)
            continue
        ax.imshow(pictures[i], cmap="gray" if pictures.ndim == 3 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if predictions is not None and labels is not None:
            right = predictions[i] == labels[i]
            text = f"{_class_name(predictions[i], class_names)} / {_class_name(labels[i], class_names)}"
            ax.set_title(text, fontsize=8, color=CORRECT if right else WRONG)
        elif predictions is not None:
            ax.set_title(f"pred {_class_name(predictions[i], class_names)}", fontsize=8)
        elif labels is not None:
            ax.set_title(_class_name(labels[i], class_names), fontsize=8)
    if title is None and predictions is not None and labels is not None:
        title = f"prediction / truth: {int((predictions == labels).sum())} of {count} right"
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _close(fig)


# ----------------------------------------------------------------------------- filters


def show_filters(weight, ncols: int | None = None, title: str | None = None) -> Figure:
    """First-layer filters as one image grid, each filter rescaled to [0, 1] on its own.

    Three-channel filters are drawn in colour, as in Figure 3 of Krizhevsky et al. 2012
    (with 12 columns, AlexNet's 96 filters fill eight rows: the top four from the first
    tower, the bottom four from the second). One-channel filters (LeNet's C1) are drawn in
    grey: dark for the most negative weight, white for the most positive. Filters with other
    channel counts (a deeper layer) get one row per filter and one column per input channel.

    Args:
        weight: (C_out, C_in, kH, kW) tensor, or a convolution layer (its .weight is used).
        ncols: filters per row (default: 12 for 96 filters or more, else up to 8).
        title: the axes' title (default: says how many filters of what size).

    Returns:
        A Figure with one axes, holding the grid.
    """
    weight = getattr(weight, "weight", weight)
    kernels = _numpy(weight)
    if kernels.ndim != 4:
        raise ValueError(f"show_filters expected weights of shape (C_out, C_in, kH, kW), got {tuple(kernels.shape)}")
    c_out, c_in, kh, kw = kernels.shape
    if c_in == 3:
        tiles = np.stack([_rescale(k).transpose(1, 2, 0) for k in kernels])  # (C_out, kH, kW, 3)
        described = f"{c_out} filters of {kh}x{kw}x3, each rescaled to [0, 1]"
    elif c_in == 1:
        tiles = np.stack([_rescale(k[0]) for k in kernels])  # (C_out, kH, kW)
        described = f"{c_out} filters of {kh}x{kw}\n(each rescaled: black most negative, white most positive)"
    else:
        tiles = np.stack([_rescale(k) for k in kernels])  # (C_out, C_in, kH, kW), rescaled per filter
        tiles = tiles.transpose(1, 0, 2, 3).reshape(c_in * c_out, kh, kw)  # row i: every filter's slice for input channel i
        ncols = c_out
        described = f"{c_out} filters of {kh}x{kw}x{c_in}: one column per filter, one row per input channel"
    ncols = ncols or (12 if c_out >= 96 else min(c_out, 8))
    canvas = _mosaic(tiles, ncols)
    nrows = math.ceil(len(tiles) / ncols)
    tile_inches = 0.9 if ncols <= 8 else 0.55
    width = max(4.0, ncols * tile_inches + 0.4)
    height = nrows * tile_inches * kh / kw + 0.9
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    _show_mosaic(ax, canvas, background="white" if c_in == 3 else "#b8c7dc")
    ax.set_title(title or described, fontsize=10)
    if c_in not in (1, 3):
        ax.set_xlabel("filter (output channel)")
        ax.set_ylabel("input channel")
    return _close(fig)


# ----------------------------------------------------------------------------- feature maps


def show_feature_maps(maps_by_layer: Mapping[str, object], max_maps: int = 16, ncols: int = 8, title: str | None = None, index: int = 0) -> Figure:
    """The feature maps of one image, one row of tiles per layer, each map rescaled to [0, 1].

    Args:
        maps_by_layer: {layer name: maps}, each (C, H, W), or (N, C, H, W) of which example
            `index` is shown (what `labs.models.layer_outputs` and `LeNet5.feature_maps`
            return). Vectors, (D,) or (N, D) such as F6's 84 units, and 1x1 maps (C5's 120)
            are drawn as a strip.
        max_maps: draw at most this many maps of each layer (the first ones).
        ncols: maps per row within a layer.
        title: the figure's title.
        index: the example to show when the maps carry a batch dimension.

    Returns:
        A Figure with one axes per layer, titled "name: C@HxW" (or "name: D units").
    """
    if not maps_by_layer:
        raise ValueError("show_feature_maps got no layers: pass {name: (C, H, W) maps}")
    panels = []
    for name, maps in maps_by_layer.items():
        array = _numpy(maps)
        if array.ndim in (2, 4):
            array = array[index]  # (N, C, H, W) -> (C, H, W); (N, D) -> (D,)
        if array.ndim == 3 and array.shape[1:] == (1, 1):
            array = array[:, 0, 0]  # (C, 1, 1) -> (C,): LeNet's C5 is 120 units
        if array.ndim == 3:
            shown = array[:max_maps]
            tiles = np.stack([_rescale(m) for m in shown])  # (C', H, W)
            canvas = _mosaic(tiles, max(1, min(ncols, len(tiles))))
            label = f"{name}: {array.shape[0]}@{array.shape[1]}x{array.shape[2]}"
            if array.shape[0] > max_maps:
                label += f" (first {max_maps})"
            panels.append((label, canvas, False))
        elif array.ndim == 1:
            panels.append((f"{name}: {array.shape[0]} units", _rescale(array)[None, :], True))  # (1, D)
        else:
            raise ValueError(f"show_feature_maps expected (C, H, W), (N, C, H, W) or (D,) for layer {name!r}, got {tuple(array.shape)}")
    width = 10.0
    heights = [0.5 if strip else max(0.8, width * canvas.shape[0] / canvas.shape[1]) for _, canvas, strip in panels]
    heights = [min(h, 4.0) for h in heights]
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, sum(heights) + 0.35 * len(panels) + 0.5 * bool(title)),
                             height_ratios=heights, layout="constrained", squeeze=False)
    for ax, (label, canvas, strip) in zip(axes[:, 0], panels):
        if strip:
            ax.imshow(canvas, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            _show_mosaic(ax, canvas, cmap="viridis")
        ax.set_title(label, fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    return _close(fig)


# ----------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(y_true, y_pred, class_names: Sequence[str] | None = None, normalize: bool = False, title: str | None = None) -> Figure:
    """The confusion matrix: row i, column j counts the examples of class i predicted as j.

    Args:
        y_true: (N,) true classes.
        y_pred: (N,) predicted classes.
        class_names: names for the classes (default: their indices); their number sets the
            matrix's size, else the largest class seen plus one.
        normalize: show each row as percentages of that class (recall on the diagonal).
        title: the axes' title (default: the accuracy).

    Returns:
        A Figure with two axes: the matrix and its colour bar.
    """
    true, pred = _numpy(y_true).astype(int).ravel(), _numpy(y_pred).astype(int).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"plot_confusion_matrix expected as many predictions as labels, got {true.shape[0]} and {pred.shape[0]}")
    if true.size and min(true.min(), pred.min()) < 0:
        raise ValueError("plot_confusion_matrix expected class indices >= 0")
    classes = len(class_names) if class_names is not None else int(max(true.max(initial=-1), pred.max(initial=-1)) + 1)
    classes = max(classes, 1)
    counts = np.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)  # (true, predicted)
    shown = counts.astype(np.float64)
    if normalize:
        shown = 100.0 * shown / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # each row sums to 100
    size = min(12.0, max(4.5, 0.55 * classes + 2.0))
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    image = ax.imshow(shown, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of the true class" if normalize else "examples")
    names = [_class_name(i, class_names) for i in range(classes)]
    ax.set_xticks(range(classes), names, rotation=45 if class_names is not None else 0, ha="right" if class_names is not None else "center")
    ax.set_yticks(range(classes), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if classes <= 20:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(classes):
            for j in range(classes):
                text = f"{shown[i, j]:.0f}" if not normalize else f"{shown[i, j]:.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shown[i, j] > threshold else "black")
    accuracy = float(np.trace(counts)) / max(int(counts.sum()), 1)
    ax.set_title(title or f"Confusion matrix: {accuracy:.2%} of {int(counts.sum()):,} right")
    return _close(fig)
