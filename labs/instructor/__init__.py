"""The instructor's tools: never needed by a student.

    release.py            `python -m labs release`: the stubs in labs/, generated from solutions/
    submissions.py        finding and unpacking a class's submissions (Moodle, Canvas, Gradescope, plain)
    class_grading.py      `python -m labs grade-class`: a whole class, resumable
    class_report.py       what class grading writes: feedback.md, grades.csv, report.md with plots
    gradescope_zip.py     `python -m labs gradescope-package`: Gradescope's autograder zip
    notebook_cleaning.py  notebooks kept without outputs in git
    handout.py            `python -m labs handout`: the students' repository
    similarity.py         pairs of submissions that share code beyond the starter
    late_work.py          due dates, extensions and late policies
    lms_export.py         gradebooks Canvas and Moodle import, and CSV cells no spreadsheet runs
"""
