"""Provided infrastructure: you use it, you never need to edit it.

    settings   LABS_FAST (fast mode for CI) and LABS_DATA_DIR (where datasets live)
    device     CUDA, then Apple MPS, then CPU, overridable
    seeding    reproducible runs
    data       MNIST and CIFAR-10 as tensors, downloaded when missing, checked when present
    training   the training loop: progress bars, history, evaluation, resumable checkpoints
    plots      curves, image grids, filters, feature maps, confusion matrices
    recipes    `python -m labs train {mlp,lenet,alexnet}`
    grading    `python -m labs grade`: the autograder
    release    `python -m labs release`: stubs generated from the solutions
"""
