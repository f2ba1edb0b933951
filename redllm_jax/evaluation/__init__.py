"""Commands that read a trained checkpoint: perplexity, harness, length extrapolation,
attention analysis, inference and export (with the dependency-light standalone loader)."""
