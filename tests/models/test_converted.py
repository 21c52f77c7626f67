"""Converted (de-quantized) copies are trusted only when they match what was recorded at write time."""

import pytest

from specdec.models import load_model
from specdec.models.assets import ASSETS
from specdec.models.converted import STAMP, WEIGHTS, converted_dir, is_verified, write_converted
from specdec.models.device import DTYPES
from specdec.testing import FixtureSpec, byte_tokenizer, random_model


@pytest.fixture
def written(tmp_path):
    directory = tmp_path / "converted" / "tiny"
    write_converted(random_model(FixtureSpec(num_layers=1)), byte_tokenizer(), directory)
    return directory


def test_a_fresh_copy_verifies_and_leaves_no_partial_directory(written):
    assert is_verified(written)
    assert (written / STAMP).is_file()
    assert [p.name for p in written.parent.iterdir()] == [written.name]


def test_a_truncated_copy_does_not_verify(written):
    weights = written / WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert not is_verified(written)


def test_a_copy_edited_in_place_does_not_verify(written):
    data = bytearray((written / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    (written / WEIGHTS).write_bytes(bytes(data))
    assert not is_verified(written)


def test_a_copy_without_its_stamp_does_not_verify(written):
    (written / STAMP).unlink()
    assert not is_verified(written)


@pytest.mark.slow
def test_truncated_converted_copy_of_the_target_is_rebuilt(tmp_path):
    """As a user would break it: truncate the cached copy; the next load rebuilds it from the GGUF."""
    import shutil

    from specdec.files import default_cache_dir

    name = "smollm2-135m-instruct"
    cache = tmp_path / "cache"
    cache.mkdir()
    gguf = default_cache_dir() / ASSETS[name].filename
    if gguf.is_file():  # reuse the GGUF already fetched on this machine (its SHA-256 is checked on use)
        shutil.copy(gguf, cache / gguf.name)
    first = load_model(name, cache_dir=cache)
    copy = converted_dir(ASSETS[name], DTYPES["float32"], cache)
    assert is_verified(copy)
    ids = first.tokenizer("The capital of France is", return_tensors="pt").input_ids
    expected = first.model(ids).logits.argmax(-1).tolist()
    del first  # its weights are memory-mapped from the copy about to be truncated
    weights = copy / WEIGHTS
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 3)
    again = load_model(name, cache_dir=cache)
    assert is_verified(copy)
    assert again.model(ids).logits.argmax(-1).tolist() == expected
