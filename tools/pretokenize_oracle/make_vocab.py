"""Write a vocab-only GGUF (gpt2 byte-level BPE) in which BPE merges any
piece of up to LMAX characters of the given cases completely, and the cases
in llama.cpp's .inp layout beside it.

Usage: python3 make_vocab.py OUT.gguf LMAX PRE   (writes OUT.gguf, OUT.gguf.inp)

Tokens: the 256 byte symbols of GPT-2's alphabet; the prefixes of each
multi-byte character, merged left to right and ranked before everything
else; every substring of 2..LMAX characters of a case, with a merge for
every split of it at a character boundary.  No merge crosses a pre-token
boundary in llama.cpp, so its token pieces are its pre-token split.
"""
import struct
import sys

from cases import all_cases


def gpt2_byte_alphabet():
    shown = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) +
             list(range(0xAE, 0x100)))
    table = {b: chr(b) for b in shown}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def main():
    out, lmax, pre = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    alphabet = gpt2_byte_alphabet()

    def spell(text):
        return "".join(alphabet[b] for b in text.encode("utf-8"))

    tokens = [alphabet[b] for b in range(256)]
    known = set(tokens)
    merges = []
    merged = set()

    def add(token, left, right):
        if token not in known:
            known.add(token)
            tokens.append(token)
        if (left, right) not in merged:
            merged.add((left, right))
            merges.append(left + " " + right)

    cases = all_cases()
    for ch in sorted({ch for case in cases for ch in case}):
        spelled = spell(ch)
        for k in range(2, len(spelled) + 1):
            add(spelled[:k], spelled[:k - 1], spelled[k - 1])
    pieces = set()
    for case in cases:
        for i in range(len(case)):
            for j in range(i + 2, min(len(case), i + lmax) + 1):
                pieces.add(case[i:j])
    for piece in sorted(pieces, key=lambda p: (len(p), p)):
        for k in range(1, len(piece)):
            add(spell(piece), spell(piece[:k]), spell(piece[k:]))

    def string(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    kv = []

    def put(key, kind, payload):
        kv.append(string(key) + struct.pack("<I", kind) + payload)

    def put_str(key, value):
        put(key, 8, string(value))

    def put_u32(key, value):
        put(key, 4, struct.pack("<I", value))

    put_str("general.architecture", "gpt2")
    put_str("general.name", "pre-tokenizer oracle")
    put_u32("gpt2.block_count", 1)
    put_u32("gpt2.context_length", 1024)
    put_u32("gpt2.embedding_length", 64)
    put_u32("gpt2.feed_forward_length", 256)
    put_u32("gpt2.attention.head_count", 1)
    put("gpt2.attention.layer_norm_epsilon", 6, struct.pack("<f", 1e-5))
    put_str("tokenizer.ggml.model", "gpt2")
    put_str("tokenizer.ggml.pre", pre)
    put("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(map(string, tokens)))
    put("tokenizer.ggml.token_type", 9,
        struct.pack("<IQ", 5, len(tokens)) + struct.pack("<%di" % len(tokens), *([1] * len(tokens))))
    put("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(map(string, merges)))
    with open(out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)))
        for entry in kv:
            f.write(entry)
        f.write(b"\0" * ((-f.tell()) % 32))
    with open(out + ".inp", "wb") as f:
        sep = "\n__ggml_vocab_test__\n"
        f.write((sep.join(cases) + sep).encode("utf-8"))
    print("%d cases, %d tokens, %d merges" % (len(cases), len(tokens), len(merges)), file=sys.stderr)


if __name__ == "__main__":
    main()
