"""The diagnosis: checks (drift, geometry, counterfactuals, hypotheses) turned into findings with
evidence, and the orchestrator that streams them as events."""
