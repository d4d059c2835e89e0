"""The parts of :mod:`lpm.calibration.fit_stance`, by topic; import from there."""
