from .legacy import main  # noqa: F401  (temporary, replaced by the split package)
