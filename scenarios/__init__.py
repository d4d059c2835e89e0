"""Scenario definitions: one module per scenario, each exposing ``SCENARIO`` (an ``lpm.Scenario``).

``lpm run NAME`` runs ``lpm.scenarios.NAME.SCENARIO``.
"""

if __name__ != "lpm.scenarios":  # imported as a bare `scenarios` from the repository root: see lpm.kernels._toplevel
    from lpm.kernels._toplevel import hand_over

    hand_over(__name__, __file__)

