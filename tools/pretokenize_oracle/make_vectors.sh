#!/usr/bin/env bash
# make_vectors.sh — write test/unit/data/pretokenize-gpt-4o.txt from
# llama.cpp itself: the prebuilt libllama of the npm package
# node-llama-cpp@3.21.1.  Nothing of llama.cpp is built: its headers come
# from the git bundle that package ships, its libraries are the package's.
# Opt-in, by hand; not part of the build or of make test.  Needs gcc,
# python3, git and about 400 MB in $TMPDIR; takes a minute or two.
#
#   npm install --prefix /some/dir node-llama-cpp@3.21.1
#   NODE_MODULES=/some/dir/node_modules tools/pretokenize_oracle/make_vectors.sh \
#       > test/unit/data/pretokenize-gpt-4o.txt
#
# Run from the repository root (the inputs include the .inp files under
# $PGI_SHARED_MODELS/vocab, by default ../shared/models/vocab).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules=${NODE_MODULES:?set NODE_MODULES to the node_modules folder holding node-llama-cpp@3.21.1}
bins=$modules/@node-llama-cpp/linux-x64/bins/linux-x64
bundle=$modules/node-llama-cpp/llama/gitRelease.bundle
lmax=120

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$bundle" "$work/llama.cpp" 2>/dev/null
gcc -std=c11 -O1 -Wall -Wextra -Werror -I"$work/llama.cpp/include" -I"$work/llama.cpp/ggml/include" \
    "$here/oracle.c" "$bins/libllama.v0.4.0.so" "$bins/libggml.v0.4.0.so" "$bins/libggml-base.so" \
    -Wl,-rpath,"$bins" -o "$work/oracle"
python3 -B "$here/make_vocab.py" "$work/vocab.gguf" "$lmax" gpt-4o

cat <<'HEADER'
# gpt-4o (o200k) pre-tokenizer splits, as llama.cpp makes them.
#
# Written by tools/pretokenize_oracle/make_vectors.sh with the prebuilt
# llama.cpp of the npm package node-llama-cpp@3.21.1 (libllama.v0.4.0.so,
# llama.cpp commit 80fb11ac73e6); nothing of llama.cpp built.  The method:
#  - the inputs (tools/pretokenize_oracle/cases.py): every valid-UTF-8 case
#    of llama.cpp's ggml-vocab-*.gguf.inp files, then hand-made strings
#    (case: ALLCAPS, CamelCase, Title words, contractions in every case;
#    numbers of 1..7 digits; Greek, Cyrillic, CJK, Arabic and Hebrew with
#    marks, Devanagari, Thai, Hangul, emoji; white-space runs with \r\n,
#    tabs and non-ASCII spaces; punctuation before newlines and slashes),
#    then (the last 11 lines) characters of Unicode 15.0, 15.1 and 16.0
#    between ASCII letters, which show llama.cpp's tables to be Unicode 15.1;
#  - a vocab-only GGUF (general.architecture "gpt2", tokenizer.ggml.model
#    "gpt2", tokenizer.ggml.pre "gpt-4o"): the 256 byte symbols of GPT-2's
#    alphabet; merges building each multi-byte character from its bytes,
#    ranked first; every substring of up to 120 characters of the inputs as
#    a token, with a merge for every split of it at a character boundary.
#    BPE then merges any piece of up to 120 characters completely, and
#    never merges across pre-token boundaries, so the token pieces are
#    llama.cpp's pre-token split;
#  - llama_model_load_from_file (vocab_only), llama_tokenize(vocab, text,
#    len, out, cap, add_special=false, parse_special=false) and
#    llama_token_to_piece.  Checked: the pieces are the input, and every
#    boundary is proven (two adjacent pieces of at most 120 characters
#    together would have merged had they been one pre-token).
#
# One case a line: its pieces, each a double-quoted string (UTF-8; escapes
# \n \r \t \" \\ and \xHH), separated by one space; the input is their
# concatenation.
HEADER
"$work/oracle" "$work/vocab.gguf" "$work/vocab.gguf.inp" "$lmax" "$bins"
