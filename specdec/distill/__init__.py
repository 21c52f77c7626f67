"""Distillation of a draft from a target LM: text sources and prompts (:mod:`.sources`), the
target's answers and top-k logits (:mod:`.teacher`) stored as safetensors records
(:mod:`.records`), the draft model (:mod:`.draft`), training (:mod:`.train`), agreement
(:mod:`.evaluate`) and the ``gen-data`` / ``train`` / ``eval`` command line (:mod:`.cli`)."""
