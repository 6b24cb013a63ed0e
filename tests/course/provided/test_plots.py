"""Course checks of the provided plots (labs/provided/plots.py), drawn with matplotlib's Agg backend."""

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labs.provided import plots  # noqa: E402

HISTORY = {
    "train_loss": [2.0, 1.0, 0.5],
    "train_acc": [0.5, 0.75, 0.9],
    "test_loss": [1.5, 0.9, 0.7],
    "test_acc": [0.6, 0.8, 0.85],
    "epoch_seconds": [1.0, 1.1, 1.0],
}


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() or ax.get_title(loc="left") for ax in fig.axes]


def _drawn_and_closed(fig) -> None:
    assert isinstance(fig, Figure), f"expected a matplotlib Figure, got {type(fig).__name__}"
    assert not plt.fignum_exists(fig.number), "the figure should be closed in pyplot, so that a notebook shows it once"
    fig.canvas.draw()  # renders without error


def test_plot_history_draws_loss_and_accuracy_per_epoch():
    fig = plots.plot_history(HISTORY, title="LeNet-5 on MNIST")
    _drawn_and_closed(fig)
    assert _titles(fig) == ["Loss", "Accuracy"]
    assert fig.get_suptitle() == "LeNet-5 on MNIST"
    loss, accuracy = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert len(loss.get_lines()) == 2 and len(accuracy.get_lines()) == 2, "train and test curves on each plot"
    train_acc = accuracy.get_lines()[0]
    assert list(train_acc.get_xdata()) == [1, 2, 3], "epochs count from 1"
    assert np.allclose(train_acc.get_ydata(), [50.0, 75.0, 90.0]), "accuracy fractions are plotted as percentages"
    assert train_acc.get_label().startswith("train"), "the training curve comes first"


def test_plot_history_tolerates_missing_keys_and_epochs_without_evaluation():
    fig = plots.plot_history({"train_loss": [1.0, 0.5], "test_loss": [None, 0.7]})
    assert _titles(fig) == ["Loss"], "a history without accuracies gets the loss plot only"
    fig = plots.plot_history({"train_acc": [0.1, 0.2], "test_acc": []})
    assert _titles(fig) == ["Accuracy"]
    with pytest.raises(ValueError, match="train_loss"):
        plots.plot_history({"epoch_seconds": [1.0]})


def test_show_images_draws_one_axes_per_image_with_green_and_red_titles():
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    predictions = labels.clone()
    predictions[3] = 5  # one mistake
    fig = plots.show_images(images, labels, predictions, ncols=4)
    _drawn_and_closed(fig)
    assert len(fig.axes) == 10, f"expected 10 axes (one per image), got {len(fig.axes)}"
    assert fig.axes[3].get_title() == "5 / 3" and fig.axes[3].title.get_color() == plots.WRONG
    assert fig.axes[0].get_title() == "0 / 0" and fig.axes[0].title.get_color() == plots.CORRECT
    assert fig.get_suptitle() == "prediction / truth: 9 of 10 right"


def test_show_images_draws_rgb_and_normalised_images_with_class_names():
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    fig = plots.show_images(torch.randn(5, 3, 32, 32), labels=torch.tensor([0, 1, 2, 3, 9]), class_names=names, title="CIFAR-10")
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == ["airplane", "automobile", "bird", "cat", "truck"]
    picture = fig.axes[0].get_images()[0].get_array()
    assert picture.shape == (32, 32, 3), f"RGB images are drawn as (H, W, 3), got {picture.shape}"
    assert 0.0 <= picture.min() and picture.max() <= 1.0, "normalised images are rescaled to [0, 1]"
    assert len(plots.show_images(torch.rand(3, 28, 28)).axes) == 3, "(N, H, W) images are accepted"
    with pytest.raises(ValueError, match="N, 1, H, W"):
        plots.show_images(torch.rand(2, 2, 28, 28))


def test_show_filters_draws_lenet_filters_in_grey():
    fig = plots.show_filters(torch.randn(6, 1, 5, 5))
    _drawn_and_closed(fig)
    assert len(fig.axes) == 1
    assert "6 filters of 5x5" in fig.axes[0].get_title()
    grid = fig.axes[0].get_images()[0].get_array()
    assert grid.shape == (5, 6 * 6 - 1), f"six 5x5 tiles in a row with 1-pixel gaps make a 5x35 grid, got {grid.shape}"


def test_show_filters_draws_alexnet_filters_in_colour_each_rescaled():
    weight = torch.randn(96, 3, 11, 11)
    weight[0] *= 100  # a large filter must not wash out the others: each is rescaled on its own
    conv1 = torch.nn.Conv2d(3, 96, 11, stride=4)
    with torch.no_grad():
        conv1.weight.copy_(weight)
    fig = plots.show_filters(conv1)  # a layer or its weight
    assert len(fig.axes) == 1 and "96 filters of 11x11x3" in fig.axes[0].get_title()
    grid = fig.axes[0].get_images()[0].get_array()
    assert grid.shape == (8 * 12 - 1, 12 * 12 - 1, 3), f"96 filters in 8 rows of 12, got a grid of {grid.shape}"
    for row, col in ((0, 0), (7, 11)):
        tile = grid[row * 12 : row * 12 + 11, col * 12 : col * 12 + 11]
        assert tile.min() == pytest.approx(0.0) and tile.max() == pytest.approx(1.0), f"filter at ({row}, {col}) is not rescaled to [0, 1]"


def test_show_filters_draws_deeper_filters_channel_by_channel():
    fig = plots.show_filters(torch.randn(16, 6, 5, 5))
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "filter (output channel)"
    grid = fig.axes[0].get_images()[0].get_array()
    assert grid.shape == (6 * 6 - 1, 16 * 6 - 1), f"6 rows (input channels) of 16 tiles (filters), got {grid.shape}"


def test_show_feature_maps_draws_one_axes_per_layer():
    maps = {
        "c1": torch.randn(2, 6, 28, 28),
        "s2": torch.randn(2, 6, 14, 14),
        "c3": torch.randn(2, 16, 10, 10),
        "c5": torch.randn(2, 120, 1, 1),
        "f6": torch.randn(2, 84),
    }
    fig = plots.show_feature_maps(maps, title="LeNet-5")
    _drawn_and_closed(fig)
    assert _titles(fig) == ["c1: 6@28x28", "s2: 6@14x14", "c3: 16@10x10", "c5: 120 units", "f6: 84 units"]
    fig = plots.show_feature_maps({"conv1": torch.randn(96, 55, 55)}, max_maps=8)
    assert _titles(fig) == ["conv1: 96@55x55 (first 8)"], "(C, H, W) maps without a batch dimension are accepted"


def test_plot_confusion_matrix_by_hand():
    # true 0, 0, 1, 2 predicted 0, 1, 1, 0: row 0 = (1, 1, 0), row 1 = (0, 1, 0), row 2 = (1, 0, 0); 2 of 4 right.
    fig = plots.plot_confusion_matrix(torch.tensor([0, 0, 1, 2]), np.array([0, 1, 1, 0]))
    _drawn_and_closed(fig)
    assert len(fig.axes) == 2, "the matrix and its colour bar"
    matrix = fig.axes[0]
    assert np.array_equal(matrix.get_images()[0].get_array(), [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    assert matrix.get_title() == "Confusion matrix: 50.00% of 4 right"
    assert (matrix.get_xlabel(), matrix.get_ylabel()) == ("predicted class", "true class")
    fig = plots.plot_confusion_matrix([0, 1], [1, 1], class_names=["cat", "dog", "frog"], normalize=True)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["cat", "dog", "frog"]
    assert np.allclose(fig.axes[0].get_images()[0].get_array()[0], [0.0, 100.0, 0.0]), "rows are percentages of the true class"
