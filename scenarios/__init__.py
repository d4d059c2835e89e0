"""Scenario definitions: one module per scenario, each exposing ``SCENARIO`` (an ``lpm.Scenario``).

``lpm run NAME`` runs ``lpm.scenarios.NAME.SCENARIO``.
"""
