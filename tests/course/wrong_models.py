"""Wrong implementations of labs 3 and 4 (solutions/models.py) that the graded tests must catch.

Each edit breaks one exercise, and tests/test_models.py must take points from that exercise only.
"""

from tests.course.mutation import WrongImplementation

WRONG = [
    WrongImplementation(
        name="LeNet5 forgets the activation after C5",
        exercise="3.1",
        module="models",
        old="x = self.act5(x)  # (N, 120, 1, 1)",
        new="x = x  # (N, 120, 1, 1): no activation (wrong)",
    ),
    WrongImplementation(
        name="AlexNet normalises conv2's maps across both towers (one LRN over all 256 channels)",
        exercise="4.1",
        module="models",
        old="self.norm2 = TowerLocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=groups)",
        new="self.norm2 = TowerLocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1)",
    ),
    WrongImplementation(
        name="LRN backward without the windowed sum (each channel's own term only)",
        exercise="4.2",
        module="models",
        old="through_sum = channel_window_sum(scaled * x / denominator, ctx.size)",
        new="through_sum = scaled * x / denominator  # the neighbours' terms are forgotten (wrong)",
        says="gradient for x",
    ),
    WrongImplementation(
        name="LRN forward forgets k (divides by (alpha * S) ** beta)",
        exercise="4.2",
        module="models",
        old="denominator = k + alpha * channel_window_sum(x * x, size)",
        new="denominator = alpha * channel_window_sum(x * x, size)  # k is missing (wrong)",
    ),
]
