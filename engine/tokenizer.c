/*
 * tokenizer.c — loading a GGUF vocabulary, special-token handling,
 * SentencePiece-style and byte-level BPE encoding, and decoding.
 *
 * The behaviour follows llama.cpp (src/llama-vocab.cpp) so that ids match
 * its test vectors; the code is our own.  Notable facts it reproduces:
 *  - token text -> id: a later token with the same text wins; an empty
 *    token text is renamed "[EMPTY_<id>]";
 *  - tokens spelled <|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>,
 *    <|endoftext|>, <|eom_id|>, <EOT> end generation and are treated as
 *    control tokens whatever their stored type;
 *  - text is first cut at special tokens (longest text first); control
 *    and unknown tokens only when parse_special, user-defined always;
 *  - SPM: a space is prefixed to each text fragment that starts the input
 *    or follows a special token (add_space_prefix), spaces become U+2581,
 *    the best-scoring adjacent pair is merged while one exists (ties: the
 *    leftmost), leftovers fall back to <0xNN> byte tokens;
 *  - BPE: pre-tokenizer split, bytes mapped to GPT-2's alphabet, the
 *    lowest-ranked merge applied first (ties: the leftmost).
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgi_memory.h"
#include "tokenizer_internal.h"
#include "unicode.h"

/* Per-token attribute bits beyond the type. */
enum {
    ATTR_END_OF_GENERATION = 0x01,
    ATTR_RSTRIP = 0x02,          /* eat white space after it when splitting */
    ATTR_LSTRIP = 0x04           /* eat white space before it */
};

#define SPM_SPACE "\xE2\x96\x81"   /* U+2581 LOWER ONE EIGHTH BLOCK */
#define SPM_SPACE_LEN 3

struct pgi_tokenizer {
    pgi_tokenizer_kind kind;
    pgi_pretokenizer_kind pre;
    char pre_name[64];

    int32_t n_tokens;
    char *text_blob;             /* all token texts, back to back */
    size_t *text_offset;
    uint32_t *text_length;
    float *scores;
    uint8_t *types;              /* pgi_token_type, after overrides */
    uint8_t *attrs;

    char *piece_blob;            /* decoded pieces, as if rendering specials */
    size_t *piece_offset;
    uint32_t *piece_length;
    size_t max_piece_length;

    int32_t *token_table;        /* open addressing: text -> id, -1 empty */
    size_t token_table_mask;

    /* BPE merges: (left, right) -> rank */
    int32_t n_merges;
    char *merge_blob;
    size_t *merge_offset;        /* left starts here, right follows it */
    uint32_t *merge_left_length;
    uint32_t *merge_right_length;
    int32_t *merge_table;
    size_t merge_table_mask;

    int32_t bos, eos, eot, eom, unknown, padding;
    int32_t separator;           /* WordPiece: [SEP], appended after the text */
    bool lowercase, strip_accents;   /* WordPiece normalizer */
    uint32_t max_token_length;   /* bytes of the longest token text */
    bool add_bos, add_eos, add_space_prefix, clean_spaces, ignore_merges;

    int32_t *special_ids;        /* control/user-defined/unknown, longest first */
    int32_t n_special;

    int32_t byte_token[256];     /* SPM byte fallback, -1 when absent */
    int16_t gpt2_codepoint_byte[0x100 + 68];   /* GPT-2 alphabet -> byte, -1 */
    unsigned char gpt2_byte_utf8[256][2];
    uint8_t gpt2_byte_utf8_length[256];
};

/* ------------------------------------------------------------ hashing */

static inline uint64_t
hash_bytes(uint64_t h, const void *data, size_t length)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < length; i++)
    {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#define HASH_SEED 0xCBF29CE484222325ull

static inline uint64_t
hash_finish(uint64_t h)
{
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static size_t
table_size_for(size_t n)
{
    size_t size = 16;

    while (size < n * 2)
        size <<= 1;
    return size;
}

static inline const char *
token_text(const pgi_tokenizer *t, int32_t id)
{
    return t->text_blob + t->text_offset[id];
}

static int32_t
find_token(const pgi_tokenizer *t, const char *text, size_t length)
{
    size_t slot = hash_finish(hash_bytes(HASH_SEED, text, length)) & t->token_table_mask;

    for (;;)
    {
        int32_t id = t->token_table[slot];

        if (id < 0)
            return PGI_TOKEN_NONE;
        if (t->text_length[id] == length && memcmp(token_text(t, id), text, length) == 0)
            return id;
        slot = (slot + 1) & t->token_table_mask;
    }
}

/* Insert, a later id replacing an earlier one with the same text. */
static void
insert_token(pgi_tokenizer *t, int32_t new_id)
{
    const char *text = token_text(t, new_id);
    size_t length = t->text_length[new_id];
    size_t slot = hash_finish(hash_bytes(HASH_SEED, text, length)) & t->token_table_mask;

    for (;;)
    {
        int32_t id = t->token_table[slot];

        if (id < 0 || (t->text_length[id] == length && memcmp(token_text(t, id), text, length) == 0))
        {
            t->token_table[slot] = new_id;
            return;
        }
        slot = (slot + 1) & t->token_table_mask;
    }
}

static inline uint64_t
merge_hash(const char *left, size_t left_length, const char *right, size_t right_length)
{
    uint64_t h = hash_bytes(HASH_SEED, left, left_length);

    h = hash_bytes(h ^ 0xFF, "", 0);
    h *= 0x9E3779B97F4A7C15ull;
    return hash_finish(hash_bytes(h, right, right_length));
}

static int32_t
find_merge(const pgi_tokenizer *t, const char *left, size_t left_length, const char *right,
           size_t right_length)
{
    size_t slot = merge_hash(left, left_length, right, right_length) & t->merge_table_mask;

    for (;;)
    {
        int32_t m = t->merge_table[slot];
        const char *stored;

        if (m < 0)
            return -1;
        stored = t->merge_blob + t->merge_offset[m];
        if (t->merge_left_length[m] == left_length && t->merge_right_length[m] == right_length &&
            memcmp(stored, left, left_length) == 0 &&
            memcmp(stored + left_length, right, right_length) == 0)
            return m;
        slot = (slot + 1) & t->merge_table_mask;
    }
}

/* ------------------------------------------------------------ loading */

typedef struct pre_tokenizer_name {
    const char *name;
    pgi_pretokenizer_kind kind;
    bool ignore_merges;
    bool add_bos;
    bool clean_spaces;
} pre_tokenizer_name;

/* tokenizer.ggml.pre values and what llama.cpp does with each. */
static const pre_tokenizer_name pre_tokenizer_names[] = {
    {"default", PGI_PRE_DEFAULT, false, false, true},
    {"llama3", PGI_PRE_LLAMA3, true, true, true},
    {"llama-v3", PGI_PRE_LLAMA3, true, true, true},
    {"llama-bpe", PGI_PRE_LLAMA3, true, true, true},
    {"falcon3", PGI_PRE_LLAMA3, true, true, true},
    {"dbrx", PGI_PRE_LLAMA3, false, false, true},
    {"smaug-bpe", PGI_PRE_LLAMA3, false, false, true},
    {"qwen2", PGI_PRE_QWEN2, false, false, false},
    {"deepseek-r1-qwen", PGI_PRE_QWEN2, false, false, false},
    {"qwen35", PGI_PRE_QWEN35, false, false, false},
    {"stablelm2", PGI_PRE_QWEN2, false, false, true},
    {"megrez", PGI_PRE_QWEN2, false, false, true},
    {"deepseek-llm", PGI_PRE_DEEPSEEK_LLM, false, false, false},
    {"deepseek-coder", PGI_PRE_DEEPSEEK_CODER, false, false, false},
    {"gpt-4o", PGI_PRE_GPT4O, false, false, false},
    {"llama4", PGI_PRE_GPT4O, false, false, false},
    {"kanana2", PGI_PRE_GPT4O, false, false, false},
    {"talkie", PGI_PRE_GPT4O, false, false, false},
    {"minimax-m2", PGI_PRE_GPT4O, false, false, false},
    {"falcon", PGI_PRE_FALCON, false, false, true},
    {"mpt", PGI_PRE_GPT2, false, false, true},
    {"gpt-2", PGI_PRE_GPT2, false, false, true},
    {"phi-2", PGI_PRE_GPT2, false, false, true},
    {"roberta-bpe", PGI_PRE_GPT2, false, false, true},
    {"gigachat", PGI_PRE_GPT2, false, false, true},
    {"olmo", PGI_PRE_GPT2, false, false, true},
    {"jais", PGI_PRE_GPT2, false, false, true},
    {"starcoder", PGI_PRE_STARCODER, false, false, true},
    {"refact", PGI_PRE_STARCODER, false, false, true},
    {"codeshell", PGI_PRE_STARCODER, false, false, true},
    {"exaone", PGI_PRE_STARCODER, false, false, true},
    {"minerva-7b", PGI_PRE_STARCODER, false, false, true},
    {"command-r", PGI_PRE_STARCODER, false, false, false},
    {"smollm", PGI_PRE_STARCODER, false, false, false},
};

/* Texts llama.cpp takes for end-of-turn, in the order we prefer them. */
static const char *const end_of_turn_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",   /* DeepSeek */
};

/* Texts that end generation (besides EOS/EOT/EOM by id). */
static const char *const end_of_generation_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
    "<|return|>", "<|call|>",   /* OpenAI harmony (gpt-oss) */
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static int32_t
find_token_cstr(const pgi_tokenizer *t, const char *text)
{
    return find_token(t, text, strlen(text));
}

/* A special-token id from metadata; out-of-range values keep the default,
 * as llama.cpp does. */
static void
read_token_id(const gguf_file *file, const char *key, int32_t n_tokens, int32_t *id)
{
    uint64_t u;
    int64_t i;

    if (gguf_get_u64(file, key, &u))
    {
        if (u < (uint64_t) n_tokens)
            *id = (int32_t) u;
    }
    else if (gguf_get_i64(file, key, &i))
    {
        if (i >= 0 && i < n_tokens)
            *id = (int32_t) i;
    }
}

static void
copy_name(char *dst, size_t cap, gguf_string s)
{
    size_t n = s.length < cap - 1 ? (size_t) s.length : cap - 1;

    memcpy(dst, s.data, n);
    dst[n] = '\0';
}

static bool
string_contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* llama.cpp's token_to_piece with special = true, for the piece cache. */
static size_t
render_piece(const pgi_tokenizer *t, int32_t id, char *out)
{
    const char *text = token_text(t, id);
    size_t length = t->text_length[id];
    pgi_token_type type = (pgi_token_type) t->types[id];
    size_t n = 0;

    if (type == PGI_TOKEN_CONTROL || type == PGI_TOKEN_UNKNOWN || type == PGI_TOKEN_USER_DEFINED)
    {
        memcpy(out, text, length);
        return length;
    }
    if (t->kind == PGI_TOKENIZER_SPM || t->kind == PGI_TOKENIZER_WPM)
    {
        if (type == PGI_TOKEN_NORMAL)
        {
            for (size_t i = 0; i < length;)
            {
                if (i + SPM_SPACE_LEN <= length && memcmp(text + i, SPM_SPACE, SPM_SPACE_LEN) == 0)
                {
                    out[n++] = ' ';
                    i += SPM_SPACE_LEN;
                }
                else
                    out[n++] = text[i++];
            }
            return n;
        }
        if (type == PGI_TOKEN_BYTE)
        {
            /* "<0xNN>": the two hex digits at offset 3 */
            char hex[3] = {0, 0, 0};

            if (length >= 5)
            {
                hex[0] = text[3];
                hex[1] = text[4];
            }
            out[0] = (char) strtol(hex, NULL, 16);
            return 1;
        }
        return 0;
    }
    if (type == PGI_TOKEN_NORMAL)
    {
        /* Each GPT-2 alphabet character back to its byte. */
        for (size_t i = 0; i < length;)
        {
            size_t used;
            uint32_t cp = pgi_utf8_decode((const unsigned char *) text + i, length - i, &used);
            int byte = cp < N_ELEMENTS(t->gpt2_codepoint_byte) ? t->gpt2_codepoint_byte[cp] : -1;

            if (byte >= 0)
                out[n++] = (char) byte;
            else
            {
                /* llama.cpp spells an unknown character this way */
                unsigned char utf8[4];
                size_t k = pgi_utf8_encode(cp, utf8);

                memcpy(out + n, "[UNK_BYTE_0x", 12);
                n += 12;
                for (size_t j = 0; j < k; j++)
                {
                    snprintf(out + n, 3, "%02x", utf8[j]);
                    n += 2;
                }
                memcpy(out + n, text, length);
                n += length;
                out[n++] = ']';
            }
            i += used;
        }
        return n;
    }
    return 0;
}

/* Upper bound of render_piece's output for a token of this length. */
static size_t
piece_bound(size_t length)
{
    return length * (12 + 8 + length + 1) + 1;
}

static int
compare_special(const void *a, const void *b, void *context)
{
    const pgi_tokenizer *t = context;
    int32_t x = *(const int32_t *) a, y = *(const int32_t *) b;

    if (t->text_length[x] != t->text_length[y])
        return t->text_length[x] > t->text_length[y] ? -1 : 1;
    return x < y ? -1 : (x > y);
}

void
pgi_tokenizer_free(pgi_tokenizer *t)
{
    if (t == NULL)
        return;
    pgi_free(t->text_blob);
    pgi_free(t->text_offset);
    pgi_free(t->text_length);
    pgi_free(t->scores);
    pgi_free(t->types);
    pgi_free(t->attrs);
    pgi_free(t->piece_blob);
    pgi_free(t->piece_offset);
    pgi_free(t->piece_length);
    pgi_free(t->token_table);
    pgi_free(t->merge_blob);
    pgi_free(t->merge_offset);
    pgi_free(t->merge_left_length);
    pgi_free(t->merge_right_length);
    pgi_free(t->merge_table);
    pgi_free(t->special_ids);
    pgi_free(t);
}

static pgi_status
load_merges(pgi_tokenizer *t, const gguf_file *file, pgi_error *err)
{
    static const char key[] = "tokenizer.ggml.merges";
    gguf_value_type element_type;
    uint64_t count, total = 0;
    size_t at = 0, table_size;

    if (!gguf_get_array(file, key, &element_type, &count))
        return pgi_fail(err, PGI_ERR_FORMAT, "byte-level BPE vocabulary has no %s", key);
    if (element_type != GGUF_VALUE_STRING)
        return pgi_fail(err, PGI_ERR_FORMAT, "%s is not a string array", key);
    if (count > INT32_MAX / 4)
        return pgi_fail(err, PGI_ERR_FORMAT, "%s has too many entries (%llu)", key,
                        (unsigned long long) count);
    for (uint64_t i = 0; i < count; i++)
    {
        gguf_string s;

        if (!gguf_array_string(file, key, i, &s))
            return pgi_fail(err, PGI_ERR_FORMAT, "%s[%llu] is unreadable", key, (unsigned long long) i);
        total += s.length;
    }
    t->n_merges = (int32_t) count;
    t->merge_blob = pgi_alloc(total + 1);
    t->merge_offset = pgi_calloc(count + 1, sizeof(size_t));
    t->merge_left_length = pgi_calloc(count + 1, sizeof(uint32_t));
    t->merge_right_length = pgi_calloc(count + 1, sizeof(uint32_t));
    table_size = table_size_for(count);
    t->merge_table = pgi_alloc(table_size * sizeof(int32_t));
    if (t->merge_blob == NULL || t->merge_offset == NULL || t->merge_left_length == NULL ||
        t->merge_right_length == NULL || t->merge_table == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory loading %llu merges",
                        (unsigned long long) count);
    memset(t->merge_table, 0xFF, table_size * sizeof(int32_t));
    t->merge_table_mask = table_size - 1;

    for (uint64_t i = 0; i < count; i++)
    {
        gguf_string s;
        const char *space = NULL;
        size_t left_length = 0, right_length = 0;
        size_t slot;

        gguf_array_string(file, key, i, &s);
        /* "left right", split at the first space after the first byte */
        if (s.length > 1)
            space = memchr(s.data + 1, ' ', s.length - 1);
        t->merge_offset[i] = at;
        if (space != NULL)
        {
            left_length = (size_t) (space - s.data);
            right_length = s.length - left_length - 1;
            memcpy(t->merge_blob + at, s.data, left_length);
            memcpy(t->merge_blob + at + left_length, space + 1, right_length);
            at += left_length + right_length;
        }
        t->merge_left_length[i] = (uint32_t) left_length;
        t->merge_right_length[i] = (uint32_t) right_length;

        /* the first occurrence of a pair keeps its rank */
        slot = merge_hash(t->merge_blob + t->merge_offset[i], left_length,
                          t->merge_blob + t->merge_offset[i] + left_length, right_length) &
               t->merge_table_mask;
        for (;;)
        {
            int32_t m = t->merge_table[slot];

            if (m < 0)
            {
                t->merge_table[slot] = (int32_t) i;
                break;
            }
            if (t->merge_left_length[m] == left_length && t->merge_right_length[m] == right_length &&
                memcmp(t->merge_blob + t->merge_offset[m], t->merge_blob + t->merge_offset[i],
                       left_length + right_length) == 0)
                break;
            slot = (slot + 1) & t->merge_table_mask;
        }
    }
    return PGI_OK;
}

pgi_status
pgi_tokenizer_load(const gguf_file *file, pgi_tokenizer **out, pgi_error *err)
{
    static const char tokens_key[] = "tokenizer.ggml.tokens";
    static const char scores_key[] = "tokenizer.ggml.scores";
    static const char types_key[] = "tokenizer.ggml.token_type";
    pgi_tokenizer *t;
    gguf_string model, pre, name;
    gguf_value_type element_type;
    uint64_t count, total = 0;
    bool has_scores = false, has_types = false, has_pre, flag;
    pgi_status status = PGI_ERR_INTERNAL;
    size_t table_size, piece_total = 0, at;
    char model_name[64] = "";
    char *scratch = NULL;

    if (out == NULL || file == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "pgi_tokenizer_load: NULL argument");
    *out = NULL;

    if (!gguf_get_string(file, "tokenizer.ggml.model", &model))
        return pgi_fail(err, PGI_ERR_FORMAT, "the model has no tokenizer (tokenizer.ggml.model missing)");

    t = pgi_calloc(1, sizeof(*t));
    if (t == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");

    if (gguf_string_equals(model, "llama"))
    {
        t->kind = PGI_TOKENIZER_SPM;
        t->pre = PGI_PRE_DEFAULT;
        t->bos = 1;
        t->eos = 2;
        t->unknown = 0;
        t->padding = PGI_TOKEN_NONE;
        t->add_space_prefix = true;
        t->add_bos = true;
        t->add_eos = false;
        t->clean_spaces = false;
    }
    else if (gguf_string_equals(model, "gpt2"))
    {
        t->kind = PGI_TOKENIZER_BPE;
        /* llama.cpp's defaults for a gpt2 vocabulary without ids */
        t->bos = 11;
        t->eos = 11;
        t->unknown = PGI_TOKEN_NONE;
        t->padding = PGI_TOKEN_NONE;
        t->add_space_prefix = false;
        t->add_bos = false;
        t->add_eos = false;
    }
    else if (gguf_string_equals(model, "bert"))
    {
        /* llama.cpp's defaults for a WordPiece vocabulary without ids */
        t->kind = PGI_TOKENIZER_WPM;
        t->pre = PGI_PRE_DEFAULT;
        t->bos = 101;
        t->eos = PGI_TOKEN_NONE;
        t->unknown = 100;
        t->padding = 0;
        t->separator = 102;
        t->add_space_prefix = false;
        t->add_bos = true;
        t->add_eos = false;
        t->clean_spaces = true;
        t->lowercase = true;
        t->strip_accents = true;
    }
    else
    {
        char shown[64];

        copy_name(shown, sizeof(shown), model);
        pgi_tokenizer_free(t);
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "tokenizer model '%s' is not supported (only 'llama', 'gpt2' and 'bert')", shown);
    }
    t->eot = PGI_TOKEN_NONE;
    t->eom = PGI_TOKEN_NONE;

    has_pre = gguf_get_string(file, "tokenizer.ggml.pre", &pre);
    if (has_pre)
        copy_name(t->pre_name, sizeof(t->pre_name), pre);
    else
        strcpy(t->pre_name, "default");
    if (t->kind == PGI_TOKENIZER_BPE)
    {
        const pre_tokenizer_name *found = NULL;

        for (size_t i = 0; i < N_ELEMENTS(pre_tokenizer_names); i++)
            if (strcmp(pre_tokenizer_names[i].name, t->pre_name) == 0 &&
                (!has_pre || pre.length == strlen(t->pre_name)))
                found = &pre_tokenizer_names[i];
        if (found == NULL)
        {
            status = pgi_fail(err, PGI_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported",
                              t->pre_name);
            goto fail;
        }
        t->pre = found->kind;
        t->ignore_merges = found->ignore_merges;
        t->add_bos = found->add_bos;
        t->clean_spaces = found->clean_spaces;
    }
    /* SPM ignores tokenizer.ggml.pre, as llama.cpp does. */

    if (gguf_get_bool(file, "tokenizer.ggml.add_space_prefix", &flag))
        t->add_space_prefix = flag;

    /* --- the vocabulary */
    if (!gguf_get_array(file, tokens_key, &element_type, &count) || element_type != GGUF_VALUE_STRING)
    {
        status = pgi_fail(err, PGI_ERR_FORMAT, "%s is missing or not a string array", tokens_key);
        goto fail;
    }
    if (count == 0 || count > (uint64_t) INT32_MAX / 4)
    {
        status = pgi_fail(err, PGI_ERR_FORMAT, "%s has %llu entries", tokens_key,
                          (unsigned long long) count);
        goto fail;
    }
    t->n_tokens = (int32_t) count;
    for (uint64_t i = 0; i < count; i++)
    {
        gguf_string s;

        if (!gguf_array_string(file, tokens_key, i, &s))
        {
            status = pgi_fail(err, PGI_ERR_FORMAT, "%s[%llu] is unreadable", tokens_key,
                              (unsigned long long) i);
            goto fail;
        }
        if (s.length > UINT32_MAX / 2)
        {
            status = pgi_fail(err, PGI_ERR_FORMAT, "%s[%llu] is too long", tokens_key,
                              (unsigned long long) i);
            goto fail;
        }
        total += s.length > 0 ? s.length : 24;
    }
    if (gguf_get_array(file, scores_key, &element_type, &count))
    {
        if (element_type != GGUF_VALUE_FLOAT32 || count != (uint64_t) t->n_tokens)
        {
            status = pgi_fail(err, PGI_ERR_FORMAT, "%s: expected %d float32 values", scores_key,
                              t->n_tokens);
            goto fail;
        }
        has_scores = true;
    }
    if (gguf_get_array(file, types_key, &element_type, &count))
    {
        if (count != (uint64_t) t->n_tokens || element_type == GGUF_VALUE_STRING ||
            element_type == GGUF_VALUE_ARRAY || element_type == GGUF_VALUE_FLOAT32 ||
            element_type == GGUF_VALUE_FLOAT64 || element_type == GGUF_VALUE_BOOL)
        {
            status = pgi_fail(err, PGI_ERR_FORMAT, "%s: expected %d integer values", types_key,
                              t->n_tokens);
            goto fail;
        }
        has_types = true;
    }

    t->text_blob = pgi_alloc(total + 1);
    t->text_offset = pgi_calloc((size_t) t->n_tokens, sizeof(size_t));
    t->text_length = pgi_calloc((size_t) t->n_tokens, sizeof(uint32_t));
    t->scores = pgi_calloc((size_t) t->n_tokens, sizeof(float));
    t->types = pgi_calloc((size_t) t->n_tokens, 1);
    t->attrs = pgi_calloc((size_t) t->n_tokens, 1);
    table_size = table_size_for((size_t) t->n_tokens);
    t->token_table = pgi_alloc(table_size * sizeof(int32_t));
    if (!t->text_blob || !t->text_offset || !t->text_length || !t->scores || !t->types ||
        !t->attrs || !t->token_table)
    {
        status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory loading %d tokens", t->n_tokens);
        goto fail;
    }
    memset(t->token_table, 0xFF, table_size * sizeof(int32_t));
    t->token_table_mask = table_size - 1;

    at = 0;
    for (int32_t i = 0; i < t->n_tokens; i++)
    {
        gguf_string s;

        gguf_array_string(file, tokens_key, (uint64_t) i, &s);
        t->text_offset[i] = at;
        if (s.length == 0)
        {
            /* llama.cpp renames empty tokens */
            int n = snprintf(t->text_blob + at, 24, "[EMPTY_%d]", i);

            t->text_length[i] = (uint32_t) n;
        }
        else
        {
            memcpy(t->text_blob + at, s.data, s.length);
            t->text_length[i] = (uint32_t) s.length;
        }
        at += t->text_length[i];

        if (has_scores)
            gguf_array_f32(file, scores_key, (uint64_t) i, &t->scores[i]);
        t->types[i] = PGI_TOKEN_NORMAL;
        if (has_types)
        {
            int64_t type = 0;

            gguf_array_i64(file, types_key, (uint64_t) i, &type);
            t->types[i] = (type >= PGI_TOKEN_NORMAL && type <= PGI_TOKEN_BYTE)
                          ? (uint8_t) type : (uint8_t) PGI_TOKEN_UNDEFINED;
        }
        insert_token(t, i);
    }

    if (t->kind == PGI_TOKENIZER_BPE && (status = load_merges(t, file, err)) != PGI_OK)
        goto fail;

    /* --- special tokens */
    read_token_id(file, "tokenizer.ggml.bos_token_id", t->n_tokens, &t->bos);
    read_token_id(file, "tokenizer.ggml.eos_token_id", t->n_tokens, &t->eos);
    read_token_id(file, "tokenizer.ggml.eot_token_id", t->n_tokens, &t->eot);
    read_token_id(file, "tokenizer.ggml.eom_token_id", t->n_tokens, &t->eom);
    read_token_id(file, "tokenizer.ggml.unknown_token_id", t->n_tokens, &t->unknown);
    read_token_id(file, "tokenizer.ggml.padding_token_id", t->n_tokens, &t->padding);
    if (t->kind == PGI_TOKENIZER_WPM)
    {
        read_token_id(file, "tokenizer.ggml.seperator_token_id", t->n_tokens, &t->separator);
        if (t->separator >= t->n_tokens)
            t->separator = PGI_TOKEN_NONE;
        /* strip_accents follows lowercase unless the file says */
        if (gguf_get_bool(file, "tokenizer.ggml.normalizer.lowercase", &flag))
            t->lowercase = t->strip_accents = flag;
        if (gguf_get_bool(file, "tokenizer.ggml.normalizer.strip_accents", &flag))
            t->strip_accents = flag;
        for (int32_t i = 0; i < t->n_tokens; i++)
            if (t->text_length[i] > t->max_token_length)
                t->max_token_length = t->text_length[i];
    }
    if (t->bos >= t->n_tokens)
        t->bos = PGI_TOKEN_NONE;
    if (t->eos >= t->n_tokens)
        t->eos = PGI_TOKEN_NONE;
    if (t->unknown >= t->n_tokens)
        t->unknown = PGI_TOKEN_NONE;
    if (gguf_get_bool(file, "tokenizer.ggml.add_bos_token", &flag))
        t->add_bos = flag;
    if (gguf_get_bool(file, "tokenizer.ggml.add_eos_token", &flag))
        t->add_eos = flag;

    if (t->eot == PGI_TOKEN_NONE)
        for (size_t i = 0; i < N_ELEMENTS(end_of_turn_texts) && t->eot == PGI_TOKEN_NONE; i++)
            t->eot = find_token_cstr(t, end_of_turn_texts[i]);
    if (t->eom == PGI_TOKEN_NONE)
        t->eom = find_token_cstr(t, "<|eom_id|>");
    if (t->eot != PGI_TOKEN_NONE)
        t->types[t->eot] = PGI_TOKEN_CONTROL;
    if (t->eom != PGI_TOKEN_NONE)
        t->types[t->eom] = PGI_TOKEN_CONTROL;
    for (size_t i = 0; i < N_ELEMENTS(end_of_generation_texts); i++)
    {
        int32_t id = find_token_cstr(t, end_of_generation_texts[i]);

        if (id != PGI_TOKEN_NONE)
        {
            t->attrs[id] |= ATTR_END_OF_GENERATION;
            t->types[id] = PGI_TOKEN_CONTROL;
        }
    }
    if (t->eos != PGI_TOKEN_NONE)
        t->attrs[t->eos] |= ATTR_END_OF_GENERATION;
    if (t->eot != PGI_TOKEN_NONE)
        t->attrs[t->eot] |= ATTR_END_OF_GENERATION;
    if (t->eom != PGI_TOKEN_NONE)
        t->attrs[t->eom] |= ATTR_END_OF_GENERATION;
    /* Harmony (gpt-oss): <|end|> closes a message, not the reply, which ends
     * with <|return|> or <|call|>.  As llama.cpp does, when all three exist
     * <|end|> is not end-of-generation (and is rendered like a user-defined
     * token, so a reply keeps its channel structure). */
    {
        int32_t end = find_token_cstr(t, "<|end|>");

        if (end != PGI_TOKEN_NONE && find_token_cstr(t, "<|return|>") != PGI_TOKEN_NONE &&
            find_token_cstr(t, "<|call|>") != PGI_TOKEN_NONE)
        {
            t->attrs[end] &= (uint8_t) ~ATTR_END_OF_GENERATION;
            if (t->eot == end)
                t->eot = find_token_cstr(t, "<|return|>");
        }
    }

    /* tokens matched in the text before tokenizing, longest first */
    for (int32_t i = 0; i < t->n_tokens; i++)
        if (t->types[i] == PGI_TOKEN_CONTROL || t->types[i] == PGI_TOKEN_USER_DEFINED ||
            t->types[i] == PGI_TOKEN_UNKNOWN)
            t->n_special++;
    if (t->n_special > 0)
    {
        int32_t k = 0;

        t->special_ids = pgi_alloc((size_t) t->n_special * sizeof(int32_t));
        if (t->special_ids == NULL)
        {
            status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
        for (int32_t i = 0; i < t->n_tokens; i++)
            if (t->types[i] == PGI_TOKEN_CONTROL || t->types[i] == PGI_TOKEN_USER_DEFINED ||
                t->types[i] == PGI_TOKEN_UNKNOWN)
                t->special_ids[k++] = i;
        qsort_r(t->special_ids, (size_t) t->n_special, sizeof(int32_t), compare_special, t);
    }

    /* Phi-3: special tokens eat the white space after them (llama.cpp
     * sets this by model name). */
    if (gguf_get_string(file, "general.name", &name))
    {
        copy_name(model_name, sizeof(model_name), name);
        for (char *p = model_name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char) (*p + 32);
    }
    if (string_contains(model_name, "phi-3") || string_contains(model_name, "phi3"))
    {
        static const char *const not_stripped[] = {"<unk>", "<s>", "<|endoftext|>"};
        int32_t id;

        for (int32_t i = 0; i < t->n_special; i++)
            t->attrs[t->special_ids[i]] |= ATTR_RSTRIP;
        if ((id = find_token_cstr(t, "</s>")) != PGI_TOKEN_NONE)
            t->attrs[id] |= ATTR_RSTRIP;
        for (size_t i = 0; i < N_ELEMENTS(not_stripped); i++)
            if ((id = find_token_cstr(t, not_stripped[i])) != PGI_TOKEN_NONE)
                t->attrs[id] &= (uint8_t) ~ATTR_RSTRIP;
    }

    /* --- byte tables */
    for (uint32_t cp = 0; cp < N_ELEMENTS(t->gpt2_codepoint_byte); cp++)
        t->gpt2_codepoint_byte[cp] = (int16_t) pgi_gpt2_codepoint_to_byte(cp);
    for (int b = 0; b < 256; b++)
    {
        char spelled[8];
        uint32_t cp = pgi_gpt2_byte_to_codepoint((uint8_t) b);

        snprintf(spelled, sizeof(spelled), "<0x%02X>", b);
        t->byte_token[b] = find_token_cstr(t, spelled);
        if (t->byte_token[b] == PGI_TOKEN_NONE)
        {
            char single = (char) b;

            t->byte_token[b] = find_token(t, &single, 1);
        }
        t->gpt2_byte_utf8_length[b] = (uint8_t) pgi_utf8_encode(cp, t->gpt2_byte_utf8[b]);
    }

    /* --- decoded pieces: measure, then store */
    {
        size_t longest = 0;

        for (int32_t i = 0; i < t->n_tokens; i++)
            if (t->text_length[i] > longest)
                longest = t->text_length[i];
        scratch = pgi_alloc(piece_bound(longest));
        if (scratch == NULL)
        {
            status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
        for (int32_t i = 0; i < t->n_tokens; i++)
            piece_total += render_piece(t, i, scratch);
    }
    t->piece_blob = pgi_alloc(piece_total + 1);
    t->piece_offset = pgi_calloc((size_t) t->n_tokens, sizeof(size_t));
    t->piece_length = pgi_calloc((size_t) t->n_tokens, sizeof(uint32_t));
    if (!scratch || !t->piece_blob || !t->piece_offset || !t->piece_length)
    {
        status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    at = 0;
    for (int32_t i = 0; i < t->n_tokens; i++)
    {
        size_t n = render_piece(t, i, scratch);

        memcpy(t->piece_blob + at, scratch, n);
        t->piece_offset[i] = at;
        t->piece_length[i] = (uint32_t) n;
        at += n;
        if (n > t->max_piece_length)
            t->max_piece_length = n;
    }
    pgi_free(scratch);
    *out = t;
    return PGI_OK;

fail:
    pgi_free(scratch);
    pgi_tokenizer_free(t);
    return status;
}

/* ------------------------------------------------------------ accessors */

pgi_tokenizer_kind pgi_tokenizer_kind_of(const pgi_tokenizer *t) { return t->kind; }
const char *pgi_tokenizer_pre_name(const pgi_tokenizer *t) { return t->pre_name; }
int32_t pgi_tokenizer_vocab_size(const pgi_tokenizer *t) { return t->n_tokens; }
int32_t pgi_tokenizer_bos(const pgi_tokenizer *t) { return t->bos; }
int32_t pgi_tokenizer_eos(const pgi_tokenizer *t) { return t->eos; }
int32_t pgi_tokenizer_eot(const pgi_tokenizer *t) { return t->eot; }
int32_t pgi_tokenizer_unknown(const pgi_tokenizer *t) { return t->unknown; }
int32_t pgi_tokenizer_padding(const pgi_tokenizer *t) { return t->padding; }
bool pgi_tokenizer_adds_bos(const pgi_tokenizer *t) { return t->add_bos && t->bos != PGI_TOKEN_NONE; }
bool pgi_tokenizer_adds_eos(const pgi_tokenizer *t) { return t->add_eos && t->eos != PGI_TOKEN_NONE; }
size_t pgi_tokenizer_max_piece_length(const pgi_tokenizer *t) { return t->max_piece_length; }

bool
pgi_tokenizer_is_end_of_generation(const pgi_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_tokens && (t->attrs[id] & ATTR_END_OF_GENERATION) != 0;
}

pgi_token_type
pgi_tokenizer_token_type(const pgi_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_tokens)
        return PGI_TOKEN_UNDEFINED;
    return (pgi_token_type) t->types[id];
}

const char *
pgi_tokenizer_token_text(const pgi_tokenizer *t, int32_t id, size_t *length)
{
    if (id < 0 || id >= t->n_tokens)
    {
        if (length)
            *length = 0;
        return NULL;
    }
    if (length)
        *length = t->text_length[id];
    return token_text(t, id);
}

/* ------------------------------------------------------------ encoding */

/* Where ids go: written while they fit, counted always. */
typedef struct token_sink {
    int32_t *tokens;
    size_t capacity;
    size_t count;
} token_sink;

static inline void
emit(token_sink *sink, int32_t id)
{
    if (sink->count < sink->capacity)
        sink->tokens[sink->count] = id;
    sink->count++;
}

typedef struct symbol {
    int32_t prev;
    int32_t next;
    uint32_t start;      /* byte offset in the word */
    uint32_t length;     /* 0 once merged into its left neighbour */
} symbol;

typedef struct candidate {
    float score;         /* SPM: higher first */
    int32_t rank;        /* BPE: lower first */
    int32_t left;
    int32_t right;
    uint32_t length;     /* combined length when proposed */
} candidate;

/* Growable scratch reused across one pgi_tokenize call. */
typedef struct workspace {
    char *bytes;
    size_t bytes_capacity;
    uint32_t *codepoints;
    size_t codepoints_capacity;
    symbol *symbols;
    size_t symbols_capacity;
    candidate *heap;
    size_t heap_capacity;
    size_t heap_count;
    pgi_piece_list pieces;
} workspace;

static void
workspace_free(workspace *w)
{
    pgi_free(w->bytes);
    pgi_free(w->codepoints);
    pgi_free(w->symbols);
    pgi_free(w->heap);
    pgi_free(w->pieces.lengths);
}

static bool
reserve(void **buffer, size_t *capacity, size_t needed, size_t element)
{
    size_t grown;
    void *bigger;

    if (needed <= *capacity)
        return true;
    grown = *capacity ? *capacity : 256;
    while (grown < needed)
        grown *= 2;
    bigger = pgi_realloc(*buffer, *capacity * element, grown * element);
    if (bigger == NULL)
        return false;
    *buffer = bigger;
    *capacity = grown;
    return true;
}

/* a before b? */
static inline bool
candidate_first(const pgi_tokenizer *t, const candidate *a, const candidate *b)
{
    if (t->kind == PGI_TOKENIZER_SPM)
    {
        if (a->score != b->score)
            return a->score > b->score;
    }
    else if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->left < b->left;
}

static void
heap_push(const pgi_tokenizer *t, workspace *w, candidate c)
{
    size_t i = w->heap_count++;

    while (i > 0)
    {
        size_t parent = (i - 1) / 2;

        if (!candidate_first(t, &c, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = c;
}

static candidate
heap_pop(const pgi_tokenizer *t, workspace *w)
{
    candidate top = w->heap[0];
    candidate last = w->heap[--w->heap_count];
    size_t i = 0, n = w->heap_count;

    for (;;)
    {
        size_t child = 2 * i + 1;

        if (child >= n)
            break;
        if (child + 1 < n && candidate_first(t, &w->heap[child + 1], &w->heap[child]))
            child++;
        if (!candidate_first(t, &w->heap[child], &last))
            break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

/* Propose merging symbols left and right if the result is worth it. */
static void
propose(const pgi_tokenizer *t, workspace *w, const char *word, int32_t left, int32_t right)
{
    const symbol *l, *r;
    candidate c;

    if (left < 0 || right < 0)
        return;
    l = &w->symbols[left];
    r = &w->symbols[right];
    c.left = left;
    c.right = right;
    c.length = l->length + r->length;
    c.score = 0;
    c.rank = 0;
    if (t->kind == PGI_TOKENIZER_SPM)
    {
        int32_t id = find_token(t, word + l->start, c.length);

        if (id == PGI_TOKEN_NONE)
            return;
        c.score = t->scores[id];
    }
    else
    {
        int32_t rank = find_merge(t, word + l->start, l->length, word + r->start, r->length);

        if (rank < 0)
            return;
        c.rank = rank;
    }
    heap_push(t, w, c);
}

/* Split word into symbols (one per UTF-8 character, as llama.cpp counts
 * them) and merge by priority.  Returns the number of symbols or -1. */
static int32_t
merge_word(const pgi_tokenizer *t, workspace *w, const char *word, size_t length)
{
    int32_t n = 0;

    if (!reserve((void **) &w->symbols, &w->symbols_capacity, length + 1, sizeof(symbol)) ||
        !reserve((void **) &w->heap, &w->heap_capacity, 3 * length + 4, sizeof(candidate)))
        return -1;
    for (size_t at = 0; at < length; n++)
    {
        size_t char_length = pgi_utf8_sequence_length((unsigned char) word[at]);

        if (char_length > length - at)
            char_length = length - at;
        w->symbols[n].prev = n - 1;
        w->symbols[n].next = (at + char_length == length) ? -1 : n + 1;
        w->symbols[n].start = (uint32_t) at;
        w->symbols[n].length = (uint32_t) char_length;
        at += char_length;
    }
    w->heap_count = 0;
    for (int32_t i = 1; i < n; i++)
        propose(t, w, word, i - 1, i);

    while (w->heap_count > 0)
    {
        candidate c = heap_pop(t, w);
        symbol *l = &w->symbols[c.left];
        symbol *r = &w->symbols[c.right];

        /* stale: one side has changed since this pair was proposed */
        if (l->length == 0 || r->length == 0 || l->length + r->length != c.length)
            continue;
        l->length += r->length;
        r->length = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->symbols[r->next].prev = c.left;
        propose(t, w, word, l->prev, c.left);
        propose(t, w, word, c.left, l->next);
    }
    return n;
}

/* Emit the token of each symbol merge_word left in w->bytes.  A symbol that
 * is no token falls back byte by byte: SentencePiece to its <0xNN> byte
 * tokens (else unknown), BPE to each byte's own one-byte token, dropping a
 * byte that has none (as llama.cpp does). */
static void
emit_symbols(const pgi_tokenizer *t, const workspace *w, int32_t n_symbols, bool byte_tokens,
             token_sink *sink)
{
    for (int32_t i = 0; i >= 0 && n_symbols > 0; i = w->symbols[i].next)
    {
        const symbol *s = &w->symbols[i];
        int32_t id = find_token(t, w->bytes + s->start, s->length);

        if (id != PGI_TOKEN_NONE)
        {
            emit(sink, id);
            continue;
        }
        for (uint32_t j = 0; j < s->length; j++)
        {
            int32_t byte_id;

            if (byte_tokens)
            {
                byte_id = t->byte_token[(unsigned char) w->bytes[s->start + j]];
                if (byte_id == PGI_TOKEN_NONE)
                    byte_id = t->unknown;
            }
            else
                byte_id = find_token(t, w->bytes + s->start + j, 1);
            if (byte_id != PGI_TOKEN_NONE)
                emit(sink, byte_id);
        }
    }
}

static pgi_status
encode_spm(const pgi_tokenizer *t, workspace *w, const char *text, size_t length, bool prefix_space,
           token_sink *sink, pgi_error *err)
{
    size_t n = 0;
    int32_t n_symbols;

    /* worst case: every byte a space */
    if (!reserve((void **) &w->bytes, &w->bytes_capacity, (length + 1) * SPM_SPACE_LEN + 1, 1))
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
    if (prefix_space)
    {
        memcpy(w->bytes, SPM_SPACE, SPM_SPACE_LEN);
        n = SPM_SPACE_LEN;
    }
    for (size_t i = 0; i < length; i++)
    {
        if (text[i] == ' ')
        {
            memcpy(w->bytes + n, SPM_SPACE, SPM_SPACE_LEN);
            n += SPM_SPACE_LEN;
        }
        else
            w->bytes[n++] = text[i];
    }

    n_symbols = merge_word(t, w, w->bytes, n);
    if (n_symbols < 0)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
    emit_symbols(t, w, n_symbols, true, sink);
    return PGI_OK;
}

/* The longest tokens that make up one WordPiece word (U+2581 and the word's
 * bytes, at word[0..n)), left to right; [UNK] for a word they cannot. */
static void
wpm_word(const pgi_tokenizer *t, const char *word, size_t n, token_sink *sink)
{
    size_t before = sink->count;

    if (n <= SPM_SPACE_LEN)
        return;
    for (size_t i = 0; i < n; i++)
    {
        size_t longest = i + t->max_token_length < n ? i + t->max_token_length : n;
        bool match = false;

        for (size_t j = longest; j > i; j--)
        {
            int32_t id = find_token(t, word + i, j - i);

            if (id != PGI_TOKEN_NONE)
            {
                emit(sink, id);
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match)
        {
            sink->count = before;
            break;
        }
    }
    if (sink->count == before && t->unknown != PGI_TOKEN_NONE)
        emit(sink, t->unknown);
}

static bool
wpm_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/*
 * WordPiece: the text's code points (accents stripped through their
 * canonical decomposition, lower-cased, as the normalizer says) are cut
 * into words at white space; punctuation, ASCII symbols and CJK characters
 * are words of their own; NUL, U+FFFD and control characters are dropped.
 */
static pgi_status
encode_wpm(const pgi_tokenizer *t, workspace *w, const char *text, size_t length, token_sink *sink,
           pgi_error *err)
{
    size_t n = SPM_SPACE_LEN;     /* the word, after its U+2581 */

    if (!reserve((void **) &w->bytes, &w->bytes_capacity, 4 * length + SPM_SPACE_LEN + 8, 1))
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing");
    memcpy(w->bytes, SPM_SPACE, SPM_SPACE_LEN);
    for (size_t at = 0; at < length;)
    {
        size_t used;
        uint32_t cp = pgi_utf8_decode((const unsigned char *) text + at, length - at, &used);
        uint16_t flags;
        bool alone;

        at += used;
        if (t->strip_accents)
            cp = pgi_unicode_nfd_first(cp);
        flags = pgi_unicode_flags(cp);
        if (flags & PGI_UFLAG_WHITESPACE)
        {
            wpm_word(t, w->bytes, n, sink);
            n = SPM_SPACE_LEN;
            continue;
        }
        if (cp == 0 || cp == PGI_REPLACEMENT_CHARACTER || (flags & PGI_UFLAG_CONTROL))
            continue;
        if (t->strip_accents && (flags & PGI_UFLAG_MARK))
            continue;
        alone = (flags & PGI_UFLAG_PUNCTUATION) || (cp < 0x7F && (flags & PGI_UFLAG_SYMBOL)) ||
                wpm_is_cjk(cp);
        if (t->lowercase)
            cp = pgi_unicode_to_lower(cp);
        if (alone)
        {
            wpm_word(t, w->bytes, n, sink);
            n = SPM_SPACE_LEN + pgi_utf8_encode(cp, (unsigned char *) w->bytes + SPM_SPACE_LEN);
            wpm_word(t, w->bytes, n, sink);
            n = SPM_SPACE_LEN;
            continue;
        }
        n += pgi_utf8_encode(cp, (unsigned char *) w->bytes + n);
    }
    wpm_word(t, w->bytes, n, sink);
    return PGI_OK;
}

static pgi_status
encode_bpe(const pgi_tokenizer *t, workspace *w, const char *text, size_t length, token_sink *sink,
           pgi_error *err)
{
    size_t n_cps = 0, cp_at = 0;
    pgi_status status;

    if (!reserve((void **) &w->codepoints, &w->codepoints_capacity, length + 1, sizeof(uint32_t)))
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
    for (size_t i = 0; i < length;)
    {
        size_t used;

        w->codepoints[n_cps++] =
            pgi_utf8_decode((const unsigned char *) text + i, length - i, &used);
        i += used;
    }
    status = pgi_pretokenize(t->pre, w->codepoints, n_cps, &w->pieces, err);
    if (status != PGI_OK)
        return status;

    for (size_t p = 0; p < w->pieces.count; p++)
    {
        size_t piece_cps = w->pieces.lengths[p];
        size_t n = 0;
        int32_t n_symbols;
        int32_t whole;

        /* up to 4 bytes per code point, 2 per mapped byte */
        if (!reserve((void **) &w->bytes, &w->bytes_capacity, piece_cps * 8 + 1, 1))
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
        for (size_t k = 0; k < piece_cps; k++)
        {
            unsigned char utf8[4];
            size_t m = pgi_utf8_encode(w->codepoints[cp_at + k], utf8);

            for (size_t j = 0; j < m; j++)
            {
                memcpy(w->bytes + n, t->gpt2_byte_utf8[utf8[j]], t->gpt2_byte_utf8_length[utf8[j]]);
                n += t->gpt2_byte_utf8_length[utf8[j]];
            }
        }
        cp_at += piece_cps;

        if (t->ignore_merges && (whole = find_token(t, w->bytes, n)) != PGI_TOKEN_NONE)
        {
            emit(sink, whole);
            continue;
        }
        n_symbols = merge_word(t, w, w->bytes, n);
        if (n_symbols < 0)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
        emit_symbols(t, w, n_symbols, false, sink);
    }
    return PGI_OK;
}

/* A stretch of input: text (token < 0) or an already-recognised token. */
typedef struct fragment {
    int32_t token;
    size_t offset;
    size_t length;
} fragment;

typedef struct fragment_list {
    fragment *items;
    size_t count;
    size_t capacity;
} fragment_list;

static bool
add_fragment(fragment_list *list, int32_t token, size_t offset, size_t length)
{
    if (!reserve((void **) &list->items, &list->capacity, list->count + 1, sizeof(fragment)))
        return false;
    list->items[list->count].token = token;
    list->items[list->count].offset = offset;
    list->items[list->count].length = length;
    list->count++;
    return true;
}

static inline bool
is_ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cut the text fragments at every occurrence of special tokens, longest
 * token first, as llama.cpp does. */
/* Whether [offset, offset + length) lies inside one of the spans (sorted,
 * not overlapping). */
static bool
inside_spans(const pgi_text_span *spans, size_t n_spans, size_t offset, size_t length)
{
    size_t lo = 0, hi = n_spans;

    while (lo < hi)
    {
        size_t mid = lo + (hi - lo) / 2;

        if (spans[mid].offset + spans[mid].length <= offset)
            lo = mid + 1;
        else if (spans[mid].offset > offset)
            hi = mid;
        else
            return offset + length <= spans[mid].offset + spans[mid].length;
    }
    return false;
}

/* Which special-token occurrences count: all (parse_special), none of the
 * control ones, or those inside the given spans (a chat prompt). */
typedef struct special_rule {
    bool parse_special;
    const pgi_text_span *spans;     /* non-NULL: restrict control tokens to these */
    size_t n_spans;
} special_rule;

static bool
split_special(const pgi_tokenizer *t, const char *text, size_t length, const special_rule *rule,
              fragment_list *list)
{
    bool parse_special = rule->parse_special || rule->spans != NULL;
    fragment_list next = {0};
    /* Which bytes and byte pairs occur in the text: most special tokens
     * can be ruled out without searching for them. */
    uint64_t pairs[65536 / 64] = {0};
    uint64_t singles[256 / 64] = {0};

    if (!add_fragment(list, -1, 0, length))
        return false;
    for (size_t i = 0; i < length; i++)
    {
        unsigned a = (unsigned char) text[i];

        singles[a >> 6] |= 1ull << (a & 63);
        if (i + 1 < length)
        {
            unsigned pair = (a << 8) | (unsigned char) text[i + 1];

            pairs[pair >> 6] |= 1ull << (pair & 63);
        }
    }
    for (int32_t s = 0; s < t->n_special; s++)
    {
        int32_t id = t->special_ids[s];
        const char *needle = token_text(t, id);
        size_t needle_length = t->text_length[id];
        unsigned first = (unsigned char) needle[0];

        if (!parse_special &&
            (t->types[id] == PGI_TOKEN_CONTROL || t->types[id] == PGI_TOKEN_UNKNOWN))
            continue;
        if (needle_length == 1)
        {
            if (!(singles[first >> 6] & (1ull << (first & 63))))
                continue;
        }
        else
        {
            unsigned pair = (first << 8) | (unsigned char) needle[1];

            if (!(pairs[pair >> 6] & (1ull << (pair & 63))))
                continue;
        }
        if (memmem(text, length, needle, needle_length) == NULL)
            continue;

        next.count = 0;
        for (size_t f = 0; f < list->count; f++)
        {
            fragment fr = list->items[f];
            size_t offset = fr.offset, remaining = fr.length;

            if (fr.token >= 0)
            {
                if (!add_fragment(&next, fr.token, fr.offset, fr.length))
                    goto oom;
                continue;
            }
            size_t search = offset;     /* occurrences before it were refused */

            for (;;)
            {
                size_t left_over = offset + remaining - search;
                const char *match = left_over ? memmem(text + search, left_over, needle, needle_length)
                                              : NULL;
                size_t left_length, right_offset, right_length;

                /* a control token outside the template's markers is text */
                if (match != NULL && rule->spans != NULL &&
                    (t->types[id] == PGI_TOKEN_CONTROL || t->types[id] == PGI_TOKEN_UNKNOWN) &&
                    !inside_spans(rule->spans, rule->n_spans, (size_t) (match - text), needle_length))
                {
                    search = (size_t) (match - text) + 1;
                    continue;
                }
                if (match == NULL)
                {
                    /* the rest of the fragment (all of it if nothing matched) */
                    if (remaining > 0 && !add_fragment(&next, -1, offset, remaining))
                        goto oom;
                    break;
                }
                left_length = (size_t) (match - (text + offset));
                if (t->attrs[id] & ATTR_LSTRIP)
                    while (left_length > 0 && is_ascii_space(text[offset + left_length - 1]))
                        left_length--;
                if (left_length > 0 && !add_fragment(&next, -1, offset, left_length))
                    goto oom;
                if (!add_fragment(&next, id, 0, 0))
                    goto oom;
                right_offset = (size_t) (match - text) + needle_length;
                right_length = offset + remaining - right_offset;
                if (t->attrs[id] & ATTR_RSTRIP)
                    while (right_length > 0 && is_ascii_space(text[right_offset]))
                    {
                        right_offset++;
                        right_length--;
                    }
                offset = right_offset;
                remaining = right_length;
                search = offset;
                if (remaining == 0)
                    break;
            }
        }
        {
            fragment_list swap = *list;

            *list = next;
            next = swap;
        }
    }
    pgi_free(next.items);
    return true;

oom:
    pgi_free(next.items);
    return false;
}

static pgi_status
tokenize_with(const pgi_tokenizer *t, const char *text, size_t length, bool add_bos,
              const special_rule *rule, int32_t *tokens, int capacity, int *n_tokens,
              pgi_error *err)
{
    token_sink sink = {tokens, 0, 0};
    fragment_list fragments = {0};
    workspace w;
    pgi_status status = PGI_OK;
    bool previous_special = true;   /* SPM: the input start counts as special */

    if (n_tokens != NULL)
        *n_tokens = 0;
    if (t == NULL || n_tokens == NULL || (text == NULL && length > 0) || capacity < 0 ||
        (tokens == NULL && capacity > 0))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "pgi_tokenize: bad argument");
    if (length > PGI_MAX_TOKENIZE_BYTES)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "pgi_tokenize: text of %zu bytes is too long",
                        length);
    sink.capacity = (size_t) capacity;
    memset(&w, 0, sizeof(w));

    if (add_bos && t->bos != PGI_TOKEN_NONE)
        emit(&sink, t->bos);

    if (length > 0 && !split_special(t, text, length, rule, &fragments))
    {
        status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", length);
        goto done;
    }
    for (size_t f = 0; f < fragments.count; f++)
    {
        const fragment *fr = &fragments.items[f];

        if (fr->token >= 0)
        {
            emit(&sink, fr->token);
            previous_special = true;
            continue;
        }
        if (t->kind == PGI_TOKENIZER_SPM)
            status = encode_spm(t, &w, text + fr->offset, fr->length,
                                t->add_space_prefix && previous_special, &sink, err);
        else if (t->kind == PGI_TOKENIZER_WPM)
            status = encode_wpm(t, &w, text + fr->offset, fr->length, &sink, err);
        else
            status = encode_bpe(t, &w, text + fr->offset, fr->length, &sink, err);
        if (status != PGI_OK)
            goto done;
        previous_special = false;
    }

    if (add_bos && t->add_eos && t->eos != PGI_TOKEN_NONE)
        emit(&sink, t->eos);
    if (add_bos && t->kind == PGI_TOKENIZER_WPM && t->separator != PGI_TOKEN_NONE)
        emit(&sink, t->separator);

    if (sink.count > (size_t) INT32_MAX)
    {
        status = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "too many tokens");
        goto done;
    }
    *n_tokens = (int) sink.count;
    if (sink.count > sink.capacity)
        status = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                          "token buffer too small: %d tokens needed, capacity %d", *n_tokens,
                          capacity);
done:
    pgi_free(fragments.items);
    workspace_free(&w);
    return status;
}

pgi_status
pgi_tokenize(const pgi_tokenizer *t, const char *text, size_t length, bool add_bos,
             bool parse_special, int32_t *tokens, int capacity, int *n_tokens, pgi_error *err)
{
    special_rule rule = {parse_special, NULL, 0};

    return tokenize_with(t, text, length, add_bos, &rule, tokens, capacity, n_tokens, err);
}

static pgi_status
tokenize_alloc_with(const pgi_tokenizer *t, const char *text, size_t length, bool add_bos,
                    const special_rule *rule, int32_t **tokens, int *n_tokens, pgi_error *err)
{
    int needed = 0;
    pgi_status status;

    if (tokens == NULL || n_tokens == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "pgi_tokenize_alloc: NULL output");
    *tokens = NULL;
    *n_tokens = 0;
    /* a first guess that usually fits: one token per byte plus BOS/EOS */
    {
        size_t guess = length + 2;
        int32_t *buffer;

        if (guess > (size_t) INT32_MAX / 4)
            guess = (size_t) INT32_MAX / 4;
        buffer = pgi_alloc(guess * sizeof(int32_t));
        if (buffer == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
        status = tokenize_with(t, text, length, add_bos, rule, buffer, (int) guess, &needed, err);
        if (status == PGI_ERR_INVALID_ARGUMENT && needed > (int) guess)
        {
            pgi_free(buffer);
            buffer = pgi_alloc((size_t) needed * sizeof(int32_t));
            if (buffer == NULL)
                return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            status = tokenize_with(t, text, length, add_bos, rule, buffer, needed, &needed, err);
        }
        if (status != PGI_OK || needed == 0)
        {
            pgi_free(buffer);
            return status;
        }
        *tokens = buffer;
        *n_tokens = needed;
    }
    return PGI_OK;
}

pgi_status
pgi_tokenize_alloc(const pgi_tokenizer *t, const char *text, size_t length, bool add_bos,
                   bool parse_special, int32_t **tokens, int *n_tokens, pgi_error *err)
{
    special_rule rule = {parse_special, NULL, 0};

    return tokenize_alloc_with(t, text, length, add_bos, &rule, tokens, n_tokens, err);
}

pgi_status
pgi_tokenize_marked(const pgi_tokenizer *t, const char *text, size_t length, bool add_bos,
                    const pgi_text_span *specials, size_t n_specials, int32_t **tokens,
                    int *n_tokens, pgi_error *err)
{
    static const pgi_text_span none = {0, 0};
    special_rule rule = {false, specials != NULL ? specials : &none, specials != NULL ? n_specials : 0};

    return tokenize_alloc_with(t, text, length, add_bos, &rule, tokens, n_tokens, err);
}

/* ------------------------------------------------------------ decoding */

/* The piece llama.cpp's token_to_piece gives with special = false. */
static inline const char *
piece_of(const pgi_tokenizer *t, int32_t id, size_t *length)
{
    pgi_token_type type = (pgi_token_type) t->types[id];

    if (type == PGI_TOKEN_CONTROL || type == PGI_TOKEN_UNKNOWN)
    {
        *length = 0;
        return "";
    }
    *length = t->piece_length[id];
    return t->piece_blob + t->piece_offset[id];
}

static inline const char *
piece_rendered(const pgi_tokenizer *t, int32_t id, bool render_special, size_t *length)
{
    if (render_special)
    {
        *length = t->piece_length[id];
        return t->piece_blob + t->piece_offset[id];
    }
    return piece_of(t, id, length);
}

int
pgi_token_piece(const pgi_tokenizer *t, int32_t id, char *buffer, size_t capacity)
{
    size_t length;
    const char *piece;

    if (t == NULL || id < 0 || id >= t->n_tokens)
        return -1;
    piece = piece_of(t, id, &length);
    if (buffer != NULL)
        memcpy(buffer, piece, length < capacity ? length : capacity);
    return (int) length;
}

long
pgi_detokenize(const pgi_tokenizer *t, const int32_t *tokens, int n_tokens, bool remove_special,
               bool unparse_special, char *buffer, size_t capacity)
{
    size_t total = 0;
    bool strip_space = t->add_space_prefix;
    char *text = buffer;

    if (n_tokens < 0 || (tokens == NULL && n_tokens > 0))
        return -1;
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= t->n_tokens)
            return -1;
    if (remove_special && t->add_bos && n_tokens > 0 && tokens[0] == t->bos)
    {
        /* llama.cpp keeps the space after a removed BOS */
        strip_space = false;
        tokens++;
        n_tokens--;
    }
    if (remove_special && t->add_eos && n_tokens > 0 && tokens[n_tokens - 1] == t->eos)
        n_tokens--;

    for (int i = 0; i < n_tokens; i++)
    {
        size_t length;
        const char *piece = piece_rendered(t, tokens[i], unparse_special, &length);

        /* only the first token's leading space goes */
        if (strip_space && length > 0 && piece[0] == ' ')
        {
            piece++;
            length--;
        }
        strip_space = false;
        if (total < capacity)
            memcpy(text + total, piece, length <= capacity - total ? length : capacity - total);
        total += length;
    }
    if (total > capacity || !t->clean_spaces)
        return (long) total;

    /* clean_up_tokenization_spaces, in llama.cpp's three passes */
    {
        size_t n = total, k;

        /* " ?", " !", " .", " ," lose the space */
        k = n ? 1 : 0;
        for (size_t i = 1; i < n; i++)
        {
            char x = text[i];

            if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
                k--;
            text[k++] = x;
        }
        n = k;
        /* " ' " becomes "'" */
        k = n ? 1 : 0;
        for (size_t i = 1; i < n; i++)
        {
            char x = text[i];

            if (x == '\'' && i + 1 < n && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                k--;
                text[++i] = '\0';
            }
            text[k++] = x;
        }
        n = k;
        /* " 's", " 'm", " 're", " 've" lose the space */
        k = n ? 1 : 0;
        for (size_t i = 1; i < n; i++)
        {
            char x = text[i];

            if (text[i - 1] == ' ' && x == '\'' && i + 1 < n)
            {
                char x1 = text[i + 1];

                if (x1 == 's' || x1 == 'm')
                    k--;
                else if (i + 2 < n && ((x1 == 'r' && text[i + 2] == 'e') ||
                                       (x1 == 'v' && text[i + 2] == 'e')))
                    k--;
            }
            text[k++] = x;
        }
        return (long) k;
    }
}

/* ------------------------------------------------------------ streaming */

pgi_status
pgi_detokenizer_init(pgi_detokenizer *d, const pgi_tokenizer *t, bool strip_leading_space,
                     pgi_error *err)
{
    if (d == NULL || t == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "pgi_detokenizer_init: NULL argument");
    memset(d, 0, sizeof(*d));
    d->tokenizer = t;
    /* each byte may turn into U+FFFD (3 bytes), plus the held bytes */
    d->output_capacity = 3 * (t->max_piece_length + 8) + 16;
    d->output = pgi_alloc(d->output_capacity);
    if (d->output == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    d->strip_leading_space = strip_leading_space && t->add_space_prefix;
    d->at_start = true;
    return PGI_OK;
}

static const unsigned char replacement_utf8[3] = {0xEF, 0xBF, 0xBD};

/* Bytes needed by a lead byte, 0 when it cannot start a character. */
static int
utf8_needed(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    if (lead >= 0xF0 && lead <= 0xF4)
        return 4;
    return 0;
}

/* May byte follow the held bytes (Unicode's well-formed table)? */
static bool
utf8_continues(const unsigned char *held, int n_held, unsigned char byte)
{
    if ((byte & 0xC0) != 0x80)
        return false;
    if (n_held == 1)
    {
        switch (held[0])
        {
            case 0xE0: return byte >= 0xA0;
            case 0xED: return byte <= 0x9F;
            case 0xF0: return byte >= 0x90;
            case 0xF4: return byte <= 0x8F;
            default: break;
        }
    }
    return true;
}

static size_t
detokenizer_feed(pgi_detokenizer *d, const unsigned char *bytes, size_t length)
{
    size_t n = 0;

    for (size_t i = 0; i < length; i++)
    {
        unsigned char b = bytes[i];

        if (d->n_pending > 0)
        {
            if (utf8_continues(d->pending, d->n_pending, b))
            {
                d->pending[d->n_pending++] = b;
                if (d->n_pending == utf8_needed(d->pending[0]))
                {
                    memcpy(d->output + n, d->pending, (size_t) d->n_pending);
                    n += (size_t) d->n_pending;
                    d->n_pending = 0;
                }
                continue;
            }
            /* the held bytes never finish: one U+FFFD for them */
            memcpy(d->output + n, replacement_utf8, 3);
            n += 3;
            d->n_pending = 0;
        }
        switch (utf8_needed(b))
        {
            case 1:
                d->output[n++] = (char) b;
                break;
            case 0:
                memcpy(d->output + n, replacement_utf8, 3);
                n += 3;
                break;
            default:
                d->pending[0] = b;
                d->n_pending = 1;
                break;
        }
    }
    return n;
}

const char *
pgi_detokenizer_push(pgi_detokenizer *d, int32_t id, size_t *length)
{
    const pgi_tokenizer *t = d->tokenizer;
    const char *piece;
    size_t piece_length;

    *length = 0;
    if (id < 0 || id >= t->n_tokens)
        return NULL;
    piece = piece_rendered(t, id, d->render_special, &piece_length);
    if (d->at_start)
    {
        /* llama.cpp strips the first token's space (lstrip) only */
        if (d->strip_leading_space && piece_length > 0 && piece[0] == ' ')
        {
            piece++;
            piece_length--;
        }
        d->at_start = false;
    }
    *length = detokenizer_feed(d, (const unsigned char *) piece, piece_length);
    return d->output;
}

const char *
pgi_detokenizer_flush(pgi_detokenizer *d, size_t *length)
{
    *length = 0;
    if (d->n_pending > 0)
    {
        memcpy(d->output, replacement_utf8, 3);
        *length = 3;
        d->n_pending = 0;
    }
    d->at_start = true;
    return d->output;
}

void
pgi_detokenizer_free(pgi_detokenizer *d)
{
    if (d == NULL)
        return;
    pgi_free(d->output);
    d->output = NULL;
    d->output_capacity = 0;
}
