"""The grader's worker side: the only processes that import and run a submission (see labs.grader).

It knows nothing of tests or points, and can be killed at any moment without loss.
"""
