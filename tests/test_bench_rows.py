import json

import torch

from benchmarks import bench_rows


def test_forms_compute_the_same_product():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(48, 16, generator=g), torch.randn(1, 3, 16, generator=g)
    outs = [fn(w, x) for fn in bench_rows.FORMS.values()]
    assert all(o.shape == (1, 3, 48) for o in outs)
    assert all(torch.allclose(o, outs[0], atol=1e-5) for o in outs)


def test_linear_shapes_counts_each_layer(pair):
    target, _ = pair
    shapes = bench_rows.linear_shapes(target)
    cfg = target.config
    assert shapes[(cfg.vocab_size, cfg.hidden_size)] >= 1  # the output head
    assert sum(shapes.values()) == sum(1 for m in target.modules() if isinstance(m, torch.nn.Linear))


def test_main_writes_a_record(pair, tmp_path):
    target, _ = pair
    target.save_pretrained(tmp_path / "m")
    out = tmp_path / "rows.json"
    assert bench_rows.main(["--model", str(tmp_path / "m"), "--rows", "1,3", "--repeats", "2", "--warmup", "0",
                            "--prompt-len", "4", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["rows"] == [1, 3]
    assert rec["verify_cost"]["0"] == 1.0 and set(rec["verify_cost"]) == {"0", "2"}  # v(N) at N = rows - 1
    linears = bench_rows.linear_shapes(target)
    assert len(rec["shapes"]) == len(linears)  # every distinct linear shape of the model, once
    assert all(set(s[form]) == {"1", "3"} for s in rec["shapes"] for form in bench_rows.FORMS)
    assert set(rec["profiled_forward_s"]) == {"1", "3"}
    if torch.backends.mkl.is_available():  # fp32: the packed twin's v(N) beside the model's
        assert set(rec["packed_verify_cost"]) == {"0", "2"} and rec["packed_verify_cost"]["2"] > 0


def test_forward_breakdown_splits_a_real_forward(pair):
    target, _ = pair
    prompt = torch.randint(0, target.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(1))
    split = bench_rows.forward_breakdown(target, prompt, [1, 4], repeats=2)
    assert set(split) == {1, 4}
    assert all(set(split[m]) >= {"matmul_s", "all_s"} for m in (1, 4))
