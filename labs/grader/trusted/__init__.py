"""The grader's trusted side: it runs the tests and never imports a submission (see labs.grader)."""
