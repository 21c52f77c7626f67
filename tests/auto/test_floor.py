"""The memory floor: weight bytes counted once per storage, and positive timings."""

import torch

from specdec.auto.floor import measure_memory_floor, weight_bytes
from specdec.testing import FixtureSpec, random_model


def test_tied_weights_count_once():
    model = random_model(FixtureSpec(num_layers=1), seed=0)
    buffers = sum(b.untyped_storage().nbytes() for b in model.buffers())
    untied = weight_bytes(model)
    assert untied == sum(p.numel() * p.element_size() for p in model.parameters()) + buffers
    head = model.get_output_embeddings().weight
    model.get_output_embeddings().weight = model.get_input_embeddings().weight  # tied: one storage
    assert weight_bytes(model) == untied - head.numel() * head.element_size()
    model.to(torch.bfloat16)
    assert weight_bytes(model) < untied / 2 + buffers


def test_floor_is_the_read_and_reports_bandwidth():
    floor = measure_memory_floor(random_model(FixtureSpec(num_layers=1), seed=0), repeats=3, warmup=1)
    assert floor.floor_s == floor.read_s > 0 and floor.copy_s > 0
    record = floor.to_json()
    assert record["floor_ms"] == floor.read_s * 1e3 and record["read_GB_per_s"] > 0
