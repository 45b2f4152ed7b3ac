"""The harmonic-loss paper's two 2-D point cases (its Fig. 1): a few points in the plane, one class each."""

TOY_CASES: dict[str, tuple[tuple[float, float], ...]] = {
    "two_points": ((1.0, 1.0), (-1.0, -1.0)),
    "five_points": ((0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 0.0)),
}
"""Case name -> the points, one class per point (class ``i`` is point ``i``)."""
