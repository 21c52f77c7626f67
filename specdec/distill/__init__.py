"""Distillation of a draft from a target: data (text sources, teacher), train, evaluate."""
