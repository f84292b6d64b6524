"""What follows a diagnosis: retraining the Baseline as decided and exporting the session's report
and artifacts."""
