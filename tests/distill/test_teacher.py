import pytest
import torch

from specdec.distill import teacher
from specdec.distill.evaluate import agreement
from specdec.distill.records import load_records
from specdec.distill.sources import ChatPrompt, Sources, is_heldout
from specdec.engine.loop import autoregressive_generate

TEXTS = ["Explain: to be or not", "Explain: a much longer passage, with more words in it", "Hi"]


def unpadded_ids(tok, text):
    return tok(teacher.chat_texts(tok, [ChatPrompt(text, "shk", 0)])[0], add_special_tokens=False)["input_ids"]


def test_cut_at_eos():
    assert teacher.cut_at_eos([5, 6, 2, 2, 2], {2}) == 3
    assert teacher.cut_at_eos([5, 6], {2}) == 2
    assert teacher.cut_at_eos([5, 6, 7], frozenset()) == 3
    assert teacher.cut_at_eos([5, 9, 6], {6, 9}) == 2


def test_generate_batch_rows_match_unpadded_greedy_decoding(byte_pair):
    model, tok = byte_pair[0].model, byte_pair[0].tokenizer
    prompts = [ChatPrompt(t, "shk", key) for key, t in enumerate(TEXTS)]
    cfg = teacher.GenConfig(topk=4, max_new_tokens=6, max_prompt_tokens=128)
    recs = teacher.generate_batch(model, tok, prompts, cfg, sample=False)
    for p, r in zip(prompts, recs):
        ids = unpadded_ids(tok, p.text)
        answer = autoregressive_generate(model, torch.tensor([ids]), max_new_tokens=6).tokens
        assert r.ids.tolist() == ids + answer and r.gen_start == len(ids) and r.start == 1
        assert r.kind == "shk-g" and r.key == p.key and r.answer_tokens == 6
        with torch.no_grad():
            want = model(torch.tensor([ids + answer])).logits[0, :-1].argmax(-1)
        assert r.tids.shape == (len(ids) + 5, 4)
        assert r.tids[:, 0].long().tolist() == want.tolist()  # left padding and the cache changed nothing
        assert r.tids[len(ids) - 1:, 0].tolist() == answer  # greedy: each answer token is the teacher's top-1
    assert agreement(model, recs, pad_id=0) == 1.0

    eos = recs[0].ids[recs[0].gen_start + 1].item()  # make the first prompt's second answer token the EOS
    model.generation_config.eos_token_id = eos
    cut = teacher.generate_batch(model, tok, prompts[:1], cfg, sample=False)[0]
    assert cut.ids.tolist() == recs[0].ids[: recs[0].gen_start + 2].tolist() and cut.answer_tokens == 2
    sampled = teacher.generate_batch(model, tok, prompts, cfg, sample=True)
    assert [r.kind for r in sampled] == ["shk-t"] * 3 and all(1 <= r.answer_tokens <= 6 for r in sampled)


def test_forced_batch_rows_match_unpadded_forwards_and_skip_heldout(tmp_path, byte_pair):
    model, tok = byte_pair[0].model, byte_pair[0].tokenizer
    prompts = [ChatPrompt(t, "shk", key) for key, t in enumerate(TEXTS)]
    cfg = teacher.GenConfig(topk=4, max_prompt_tokens=128)
    recs = teacher.forced_batch(model, tok, prompts, cfg)
    for p, r in zip(prompts, recs):
        ids = unpadded_ids(tok, p.text)
        assert r.ids.tolist() == ids and r.kind == "shk-f" and r.key == p.key and r.gen_start is None
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0, :-1].topk(4, -1).indices
        assert r.tids.shape == (len(ids) - 1, 4)
        assert (r.tids[:, 0].long() == want[:, 0]).all()  # right padding changed nothing
    assert agreement(model, recs, pad_id=0) == 1.0

    pool = [ChatPrompt(f"passage number {i}", "shk", i) for i in range(40)]
    cfg = teacher.GenConfig(topk=4, out_dir=str(tmp_path), forced_from=5, forced_batch=4, forced_shard=16,
                            forced_minutes=5.0, heldout_frac=0.2)
    npos = teacher.forced_data(model, tok, pool, cfg)
    written = load_records(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forced_000005.safetensors", "forced_000021.safetensors"]
    keys = {r.key for r in written}
    assert keys == {k for k in range(5, 40) if not is_heldout(k, 0.2)} and len(keys) < 35
    assert npos == sum(r.positions for r in written)


def test_gen_data_answers_the_pool_into_safetensors_shards(tmp_path, saved_target, shakespeare_dir):
    cfg = teacher.GenConfig(target=str(saved_target), out_dir=str(tmp_path / "data"),
                            sources=Sources(shakespeare_dir=str(shakespeare_dir)), batch_size=4, max_new_tokens=3,
                            max_prompt_tokens=48, sample_frac=0.5, topk=3, minutes=5.0, threads=1)
    npos = teacher.gen_data(cfg)
    recs = load_records(tmp_path / "data")
    shards = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert shards == [f"gen_{i:05d}.safetensors" for i in range(len(shards))] and len(shards) >= 2
    assert sorted(r.key for r in recs) == list(range(len(recs))) and len(recs) > 4 * (len(shards) - 1)
    assert {r.kind for r in recs} <= {"shk-g", "shk-t"} and all(r.answer_tokens == 3 for r in recs)
    assert npos == sum(r.positions for r in recs)
    again = teacher.GenConfig(**{**vars(cfg), "out_dir": str(tmp_path / "more"), "first_batch": 1})
    teacher.gen_data(again)
    assert sorted(r.key for r in load_records(tmp_path / "more")) == list(range(4, len(recs)))


def test_load_target_needs_a_tokenizer(tmp_path, byte_pair):
    byte_pair[0].model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="no tokenizer"):
        teacher.load_target(str(tmp_path / "bare"))


def test_gen_config_validate(shakespeare_dir):
    src = Sources(shakespeare_dir=str(shakespeare_dir))
    with pytest.raises(ValueError, match="batch-size"):
        teacher.GenConfig(sources=src, batch_size=0).validate()
    with pytest.raises(ValueError, match="sample-frac"):
        teacher.GenConfig(sources=src, sample_frac=2.0).validate()
    with pytest.raises(ValueError, match="no prompt source"):
        teacher.GenConfig().validate()
