"""Other implementations measured beside ours: HF assisted generation."""
