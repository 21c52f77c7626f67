import io

import pytest

from specdec import cli
from specdec.engine.loop import speculative_generate
from specdec.stream import StreamPrinter
from specdec.testing import byte_tokenizer, save_tiny_pair, tiny_pair


def test_marks_accepted_runs_and_waits_for_whole_characters():
    tok = byte_tokenizer()
    ids = tok("hé!")["input_ids"]  # "é" is two byte tokens
    out = io.StringIO()
    printer = StreamPrinter(tok, out)
    printer([ids[0], ids[1]], ids[2])  # "h" + first byte of "é" accepted; second byte from the target
    printer([], ids[3])
    printer.finish()
    assert out.getvalue() == "[h]é!\n"


def test_stream_text_equals_generated_text():
    target, draft = tiny_pair()
    prompt = target.tokenizer("Now is the winter", return_tensors="pt")["input_ids"]
    out = io.StringIO()
    printer = StreamPrinter(target.tokenizer, out)
    result = speculative_generate(target.model, draft.model, prompt, num_draft_tokens=3, max_new_tokens=12,
                                  on_step=printer)
    printer.finish()
    shown = out.getvalue().replace("[", "").replace("]", "").rstrip("\n")
    text = target.tokenizer.decode(result.tokens)
    assert shown == text.replace("[", "").replace("]", "")
    assert "[" in out.getvalue()  # the fixture's draft agrees often


def test_cli_generate_stream(tmp_path, capsys):
    target, draft = save_tiny_pair(tmp_path)
    argv = ["generate", "--big_model", str(target), "--small_model", str(draft), "--prompt", "Thunder",
            "--max-new-tokens", "8", "--device", "cpu", "--dtype", "float32"]
    assert cli.main(argv + ["--stream", "--n", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("8 tokens") and "acceptance" in lines[-1] and "tau" in lines[-1]
    assert lines[-1].endswith("method speculative")  # no feature head for this target: the draft model at N = 4
    assert cli.main(argv) == 0  # no --n either: N chosen each step (which N depends on this machine's timings)
    lines = capsys.readouterr().out.strip().splitlines()  # with a lookup branch (eager)
    assert lines[-2].endswith("method auto-lookup") and lines[-1].startswith("auto N: c and v(N) measured in")
    assert cli.main(argv + ["--method", "baseline"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "plain decoding" in last and "acceptance" not in last and "nan" not in last
    assert cli.main(argv + ["--n", "0"]) == 2
    assert cli.main(argv + ["--method", "hf-assisted", "--stream"]) == 2  # HF reports no steps
    assert "--stream needs a method that reports its steps" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["speculative", "auto", "auto-lookup", "prompt-lookup", "hf-assisted", "hf-default",
                                    "baseline"])
def test_every_generate_method_reproduces_plain_greedy(tmp_path_factory, method):
    """``specdec generate`` dispatches through the method registry; each method is lossless."""
    from specdec.methods import GENERATE_METHODS, METHODS, Request

    assert method in GENERATE_METHODS
    target, draft = tiny_pair()
    prompt = target.tokenizer("Now is the winter", return_tensors="pt")["input_ids"]
    reference = METHODS["baseline"].run(Request(target.model, None, prompt, None, 12)).tokens
    uses_draft = METHODS[method].draft == "model"
    req = Request(target.model, draft.model if uses_draft else None, prompt, 3, 12)
    assert METHODS[method].run(req).tokens == reference


@pytest.mark.parametrize("method", ["auto", "auto-lookup"])
def test_costs_calibrated_ahead_cover_every_verify_the_method_may_choose(method):
    """``specdec generate`` and the study calibrate auto N before the clock starts; the timed run must not
    measure again (a lookup branch verifies up to LOOKUP_TOKENS rows beyond the draft's own)."""
    from specdec.auto.autotune import auto_policy
    from specdec.auto.calibration import default_calibration_cache
    from specdec.methods import METHODS, Request

    target, draft = tiny_pair()
    prompt = target.tokenizer("Now is the winter of our discontent, now is the", return_tensors="pt")["input_ids"]
    costs = auto_policy(target.model, draft.model, prompt, **METHODS[method].auto_shape(6, 32)).costs
    METHODS[method].run(Request(target.model, draft.model, prompt, "auto", 12))
    assert default_calibration_cache().get(target.model, draft.model) is costs


@pytest.mark.parametrize("method", ["eagle", "eagle-tree"])
def test_cli_generate_with_a_feature_head_prints_the_plain_greedy_text(tmp_path, capsys, method):
    """``specdec generate --head DIR --method eagle|eagle-tree --tree-width 4``: the plain greedy text, a summary."""
    import torch

    from specdec.models.feature_head import FeatureHead, FeatureHeadConfig

    target_dir, _ = save_tiny_pair(tmp_path)
    target, _ = tiny_pair()
    torch.manual_seed(0)
    FeatureHead(FeatureHeadConfig.for_target(target.model, "tiny"), target.model).save(tmp_path / "head")
    argv = ["generate", "--big_model", str(target_dir), "--head", str(tmp_path / "head"), "--prompt", "Thunder",
            "--max-new-tokens", "10", "--device", "cpu", "--dtype", "float32", "--n", "3"]
    assert cli.main(argv + ["--method", "baseline"]) == 0
    plain = capsys.readouterr().out.splitlines()[0]
    assert cli.main(argv + ["--method", method, "--tree-width", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == plain and "tau" in lines[-1]


def test_cli_generate_defaults_to_the_heads_tree_with_auto_n(tmp_path, capsys):
    """No --method: with a feature head, its tree (bf16) or chain (fp32) with a lookup branch, N chosen each step
    unless --n is given."""
    import torch

    from specdec.models.feature_head import FeatureHead, FeatureHeadConfig

    target_dir, _ = save_tiny_pair(tmp_path)
    target, _ = tiny_pair()
    torch.manual_seed(0)
    FeatureHead(FeatureHeadConfig.for_target(target.model, "tiny"), target.model).save(tmp_path / "head")
    argv = ["generate", "--big_model", str(target_dir), "--head", str(tmp_path / "head"), "--prompt", "Thunder",
            "--max-new-tokens", "10", "--device", "cpu", "--dtype", "float32"]
    assert cli.main(argv + ["--method", "baseline"]) == 0
    plain = capsys.readouterr().out.splitlines()[0]
    for extra, method in (([], "eagle-lookup-auto"), (["--n", "2"], "eagle"), (["--dtype", "bfloat16"], "eagle-tree-lookup-auto"),
                          (["--dtype", "bfloat16", "--temperature", "0.8"], "eagle-tree-lookup-auto")):
        assert cli.main(argv + extra) == 0
        lines = capsys.readouterr().out.splitlines()
        summary = next(line for line in lines if line.startswith("10 tokens"))
        assert summary.endswith(f"method {method}")
        if extra in ([], ["--n", "2"]):
            assert lines[0] == plain  # fp32 greedy: the plain text
        assert any(line.startswith("auto N:") for line in lines) == method.endswith("auto")


def test_cli_generate_with_packed_verify_prints_the_same_text(tmp_path, capsys):
    """``specdec generate --pack-verify``: the text of plain greedy decoding and a line naming the packed rows;
    with --compile it is refused in one line."""
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("packed verify needs torch with MKL")
    target, draft = save_tiny_pair(tmp_path)
    argv = ["generate", "--big_model", str(target), "--small_model", str(draft), "--prompt", "Thunder",
            "--max-new-tokens", "10", "--device", "cpu", "--dtype", "float32", "--n", "3"]
    assert cli.main(argv + ["--method", "baseline"]) == 0
    plain = capsys.readouterr().out.splitlines()[0]
    assert cli.main(argv + ["--method", "speculative", "--pack-verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == plain and lines[-1].startswith("packed verify: rows ")
    assert cli.main(argv + ["--pack-verify", "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--pack-verify is for eager runs" in err and len(err.strip().splitlines()) == 1
