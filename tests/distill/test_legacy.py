"""Fast checks of the distillation pipeline on tiny random models (no downloads)."""

import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from specdec.distill import legacy as distill


def tiny_target() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def target_records(target, n=6, length=12, k=5):
    g = torch.Generator().manual_seed(1)
    recs = []
    with torch.no_grad():
        for i in range(n):
            ids = torch.randint(3, 64, (length,), generator=g)
            vals, tids = distill.topk_rows(target(ids[None]).logits[0, :-1], k)
            start = 4
            recs.append(distill.make_record(ids.tolist(), start, vals[start - 1:], tids[start - 1:], i, "shk-g"))
    return recs


def test_topk_rows():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0]])
    vals, ids = distill.topk_rows(logits, 2)
    assert ids.tolist() == [[1, 3]]
    assert torch.allclose(vals.float(), torch.tensor([[3.0, 2.0]]), atol=1e-2)


def test_cut_at_eos_and_exclusion():
    assert distill.cut_at_eos([5, 6, 2, 2, 2], 2) == 3
    assert distill.cut_at_eos([5, 6], 2) == 2
    assert distill.is_excluded("/x/tempest_gut_f.txt") and distill.is_excluded("macbeth_gut.txt")
    assert distill.is_excluded("romeo_and_juliet_gut.txt") and not distill.is_excluded("hamlet_gut.txt")


def test_collate_alignment():
    rec = distill.make_record([5, 6, 7, 8], 2, torch.zeros(2, 3).half(), torch.tensor([[7, 0, 1], [8, 0, 1]]).int(),
                              0, "shk-g")
    b = distill.collate([rec, distill.make_record([5, 6, 9], 2, torch.zeros(1, 3).half(),
                                                  torch.tensor([[9, 0, 1]]).int(), 1, "x")], pad_id=2)
    assert b["mask"][0].tolist() == [False, True, True, False]
    assert b["mask"][1].tolist() == [False, True, False, False]
    # logits at position p predict ids[p+1]: the supervised label equals the next token here
    assert b["tids"][0, 1, 0] == 7 and b["tids"][0, 2, 0] == 8 and b["ids"][1, 2] == 9


def test_agreement_hand_case():
    target = tiny_target()
    recs = target_records(target)
    assert distill.agreement(target, recs, pad_id=2) == 1.0  # the target agrees with itself
    wrong = [dict(r, tids=(r["tids"] + 1) % 64) for r in recs]
    assert distill.agreement(target, wrong, pad_id=2) == 0.0


def test_loss_decreases_and_pca_init():
    target = tiny_target()
    recs = target_records(target)
    draft = distill.make_draft(target.config, distill.DraftConfig(layers=1, hidden=16, intermediate=32, heads=2,
                                                                  kv_heads=1))
    emb = distill.pca_embeddings(target.get_input_embeddings().weight, 16)
    assert emb.shape == (64, 16)
    with torch.no_grad():
        draft.get_input_embeddings().weight.copy_(emb)
    opt = torch.optim.AdamW(draft.parameters(), lr=1e-2)
    b = distill.collate(recs, pad_id=2)
    losses = []
    for _ in range(15):
        loss = distill.distill_loss(draft(input_ids=b["ids"], attention_mask=b["att"]).logits, b, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_split_and_batches():
    recs = [distill.make_record([1, 2, 3], 1, torch.zeros(2, 2).half(), torch.zeros(2, 2).int(), k, "shk-g")
            for k in range(200)]
    train, held = distill.split_records(recs, 0.05)
    assert len(train) + len(held) == 200 and 0 < len(held) < 30
    assert not {r["key"] for r in train} & {r["key"] for r in held}
    batches = distill.token_batches(train, 12, random.Random(0))
    assert sum(len(b) for b in batches) == len(train) and all(len(b) <= 4 for b in batches)


def test_split_passages_and_lr():
    text = "\n\n".join(f"para {i} " + "x" * 50 for i in range(20))
    ps = distill.split_passages(text, 100, 200, random.Random(0))
    assert ps and all(len(p) >= 50 for p in ps)
    cfg = distill.TrainConfig(lr=1.0, warmup=10, min_lr_frac=0.1)
    assert distill.lr_at(0, 100, cfg) == 0.1 and abs(distill.lr_at(100, 100, cfg) - 0.1) < 1e-9


def test_choose_vocab_ranks_the_teachers_first_choices_and_keeps_specials():
    def rec(top):  # rows of (top-1, runner-up)
        return distill.make_record([0] * (len(top) + 1), 1, torch.zeros(len(top), 2).half(),
                                   torch.tensor(top).int(), 0, "shk-g")
    recs = [rec([[5, 9], [5, 9], [7, 9], [8, 9]]), rec([[7, 9], [5, 11]])]
    # top-1 counts: 5 x3, 7 x2, 8 x1; 9 is only a runner-up (x5) so it ranks after every top-1 id
    assert distill.choose_vocab(recs, 3, 64) == [5, 7, 8]
    assert distill.choose_vocab(recs, 4, 64) == [5, 7, 8, 9]
    assert distill.choose_vocab(recs, 4, 64, always=(2,)) == [2, 5, 7, 8]


def test_sub_vocabulary_head_trains_and_reports_coverage():
    from specdec.models.subvocab import restrict_head

    target = tiny_target()
    recs = target_records(target)
    vocab = distill.choose_vocab(recs, 24, 64, always=(2,))
    cover = distill.head_coverage(recs, vocab, pad_id=2)
    top1 = torch.cat([r["tids"][:, 0] for r in recs]).tolist()
    assert cover == sum(t in vocab for t in top1) / len(top1)
    draft = restrict_head(distill.make_draft(target.config, distill.DraftConfig(
        layers=1, hidden=16, intermediate=32, heads=2, kv_heads=1)), vocab)
    cols = distill.head_columns(draft)
    assert cols[vocab].tolist() == list(range(len(vocab))) and (cols >= 0).sum() == len(vocab)
    opt = torch.optim.AdamW(draft.parameters(), lr=1e-2)
    b = distill.collate(recs, pad_id=2)
    assert distill.train_logits(draft, b).shape[-1] == len(vocab)
    losses = []
    for _ in range(15):
        loss = distill.distill_loss(distill.train_logits(draft, b), b, 0.5, columns=cols)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    assert distill.agreement(draft, recs, pad_id=2) > 0.3


def byte_target() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval()


def test_forced_batch_rows_match_unpadded_forwards_and_skip_heldout(tmp_path):
    from specdec.testing import byte_tokenizer

    target, tok = byte_target(), byte_tokenizer()
    tok.pad_token = tok.convert_ids_to_tokens(0)
    texts = ["Explain: to be or not", "Explain: a much longer passage, with more words in it", "Hi"]
    prompts = [distill.Prompt(t, "shk", key) for key, t in enumerate(texts)]
    cfg = distill.GenConfig(topk=4, max_prompt_tokens=128)
    recs = distill.forced_batch(target, tok, prompts, cfg)
    for p, r in zip(prompts, recs):
        chat = tok.apply_chat_template([{"role": "user", "content": p.text}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(chat, add_special_tokens=False)["input_ids"]
        assert r["ids"].tolist() == ids and r["kind"] == "shk-f" and r["key"] == p.key
        with torch.no_grad():
            want = target(torch.tensor([ids])).logits[0, :-1].topk(4, -1).indices
        assert r["tids"].shape == (len(ids) - 1, 4)
        assert (r["tids"][:, 0].long() == want[:, 0]).all()  # right padding changed nothing
    assert distill.agreement(target, recs, pad_id=0) == 1.0

    pool = [distill.Prompt(f"passage number {i}", "shk", i) for i in range(40)]
    cfg = distill.GenConfig(topk=4, out_dir=str(tmp_path), forced_from=5, forced_batch=4, forced_shard=16,
                            forced_minutes=5.0, heldout_frac=0.2)
    npos = distill.forced_data(target, tok, pool, cfg)
    written = distill.load_records(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forced_000005.pt", "forced_000021.pt"]
    keys = {r["key"] for r in written}
    assert keys == {k for k in range(5, 40) if not distill.is_heldout(k, 0.2)} and len(keys) < 35
    assert npos == sum(r["vals"].shape[0] for r in written)


def test_weight_generations_repeats_only_records_with_answers():
    gen = {"gen_start": 3, "key": 0}
    forced = {"key": 1}
    out = distill.weight_generations([gen, forced], 3)
    assert out.count(gen) == 3 and out.count(forced) == 1
    assert distill.weight_generations([gen, forced], 1) == [gen, forced]


def test_study_agreement_counts_the_targets_own_answers():
    from specdec.testing import one_thread, tiny_pair

    with one_thread():
        target, same = tiny_pair(eps=0.0)
        acc, n = distill.study_agreement(target.model, same.model, target.tokenizer, 96, 2, 12)
        assert acc == 1.0 and n == 24  # eps 0: the draft is the target's argmax everywhere
        target, far = tiny_pair(eps=1.0)
        acc_far, _ = distill.study_agreement(target.model, far.model, target.tokenizer, 96, 2, 12)
        assert acc_far < 1.0
