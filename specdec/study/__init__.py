"""The speed study: grid, paired interleaved runner, CSV store, provenance, prompts, summary, plots."""
