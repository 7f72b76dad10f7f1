"""Model intake: bring your own model (issue #19). ``run_intake`` takes an uploaded file through
format detection, feature resolution, conversion to ONNX, screening, parity, threshold evidence,
packaging, isolated verification and registration, then emits the candidate Asset."""

from fraudops.intake.core import (
    IntakeCheck,
    IntakeReport,
    IntakeRequest,
    emit_candidate,
    parse_features,
    run_intake,
)

__all__ = ["IntakeCheck", "IntakeReport", "IntakeRequest", "emit_candidate", "parse_features", "run_intake"]
