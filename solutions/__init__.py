"""Reference solutions, written once.

Each module mirrors `labs/<module>.py`: same names, same signatures, same docstrings.
Code between `# BEGIN SOLUTION <id>` and `# END SOLUTION` is what students write;
`python -m labs release` turns it into the stubs in `labs/`.
"""
