"""The parts of :mod:`lpm.calibration.fit_sentiment`, by topic; import from there."""
