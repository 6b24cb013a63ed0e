"""What you import: helpers given to you, that you never need to edit.

    settings     LABS_FAST (fast mode for CI) and LABS_DATA_DIR (where datasets live)
    device       CUDA, then Apple MPS, then CPU, overridable
    seeding      reproducible runs
    data         MNIST and CIFAR-10 as tensors, downloaded when missing, checked when present
    training     the training loop: progress bars, history, evaluation, one-cycle schedule
    augmentation random shifts and flips of whole batches
    checkpoints  runs saved after every epoch, resumed where they stopped
    plots        curves, image grids, filters, feature maps, confusion matrices
    distributed  several processes or GPUs (torchrun)
    atomic       files written whole or not at all
    recipes      `python -m labs train {mlp,lenet,alexnet}`

Nothing here imports the grader (labs/grader) or the instructor's tools (labs/instructor).
"""
