/*
 * tokenizer_internal.h — shared between tokenizer.c and the pre-tokenizer
 * (tokenizer_pretokenize.c).  Not part of the engine's public interface.
 */
#ifndef PGI_TOKENIZER_INTERNAL_H
#define PGI_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pgi_error.h"

/* The split patterns llama.cpp applies before byte-level BPE. */
typedef enum pgi_pretokenizer_kind {
    PGI_PRE_DEFAULT,          /* [\p{P}$+<=>^~|]+, gpt-2, \p{N}+, [0-9]{3} */
    PGI_PRE_GPT2,             /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
    PGI_PRE_LLAMA3,           /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    PGI_PRE_QWEN2,            /* llama3's with \p{N} instead of \p{N}{1,3} */
    PGI_PRE_QWEN35,           /* qwen2's with [\p{L}\p{M}]+ for letter runs */
    PGI_PRE_DEEPSEEK_LLM,
    PGI_PRE_DEEPSEEK_CODER,
    PGI_PRE_GPT4O,            /* o200k (gpt-oss, Phi-4-mini, Llama 4): letter runs split by ASCII case,
                               * \p{N}{1,3}, " ?[^\s\p{L}\p{N}]+[\r\n/]*", white space as llama3 */
    PGI_PRE_FALCON,
    PGI_PRE_STARCODER         /* \p{N}, then gpt-2 (also refact) */
} pgi_pretokenizer_kind;

/* A growable list of piece lengths, in code points. */
typedef struct pgi_piece_list {
    uint32_t *lengths;
    size_t count;
    size_t capacity;
} pgi_piece_list;

/*
 * Split codepoints[0..count) as the pre-tokenizer does.  On success
 * *pieces holds the lengths (in code points, all > 0, summing to count).
 * The caller frees pieces->lengths with pgi_free (also after failure).
 * Fails only for lack of memory.
 */
pgi_status pgi_pretokenize(pgi_pretokenizer_kind kind, const uint32_t *codepoints, size_t count,
                           pgi_piece_list *pieces, pgi_error *err);

#endif
