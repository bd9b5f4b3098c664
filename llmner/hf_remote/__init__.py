"""Files that ``llmner.export`` copies into a transformers model directory (custom code: torch and transformers only)."""
