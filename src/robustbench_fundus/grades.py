"""The DR grading scale: the one definition of the grades every stage uses.

International Clinical Diabetic Retinopathy (ICDR) severity scale: 0 no DR, 1 mild, 2 moderate,
3 severe non-proliferative, 4 proliferative DR.
"""
from __future__ import annotations

#: The number of DR grades (ICDR scale 0-4).
NUM_GRADES = 5
#: The grades themselves.
GRADES: tuple[int, ...] = tuple(range(NUM_GRADES))
#: Short names of the grades, in order.
GRADE_NAMES: tuple[str, ...] = ("no_dr", "mild", "moderate", "severe", "proliferative")

assert len(GRADE_NAMES) == NUM_GRADES
