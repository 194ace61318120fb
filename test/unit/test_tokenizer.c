/*
 * test_tokenizer.c — tokenizers against llama.cpp's test vectors, round
 * trips, streaming detokenization, hand-computed pre-tokenizer splits and
 * small hand-made vocabularies.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "pgi_memory.h"
#include "tokenizer.h"
#include "tokenizer_internal.h"
#include "unicode.h"
#include "test_support.h"
#include "unit.h"

/* ------------------------------------------------------------ helpers */

#define MAX_CASES 128

typedef struct test_case {
    const char *text;
    size_t length;
    int32_t expected[512];
    int n_expected;
} test_case;

/* Cases in .inp are separated by "\n__ggml_vocab_test__\n" (the text may
 * be empty); a separator at the very end closes the last case.  This is how
 * llama.cpp's tests/test-tokenizer-0.cpp reads them. */
static int
split_cases(char *input, size_t size, test_case *cases)
{
    static const char separator[] = "\n__ggml_vocab_test__\n";
    size_t sep_length = strlen(separator);
    size_t pos = 0;
    int n = 0;

    while (pos < size && n < MAX_CASES)
    {
        char *next = memmem(input + pos, size - pos, separator, sep_length);

        cases[n].text = input + pos;
        if (next == NULL)
        {
            cases[n++].length = size - pos;
            break;
        }
        cases[n++].length = (size_t) (next - (input + pos));
        pos = (size_t) (next - input) + sep_length;
    }
    return n;
}

static int
read_expected(char *output, test_case *cases, int max_cases)
{
    int n = 0;
    char *line = output;

    while (*line != '\0' && n < max_cases)
    {
        char *end = strchr(line, '\n');
        char *p = line;

        if (end != NULL)
            *end = '\0';
        cases[n].n_expected = 0;
        for (;;)
        {
            char *after;
            long v = strtol(p, &after, 10);

            if (after == p)
                break;
            cases[n].expected[cases[n].n_expected++] = (int32_t) v;
            p = after;
        }
        n++;
        if (end == NULL)
            break;
        line = end + 1;
    }
    return n;
}

static pgi_tokenizer *
load_vocab_file(const char *path)
{
    gguf_file *file = NULL;
    pgi_tokenizer *tok = NULL;
    pgi_error err;

    if (gguf_open(path, &file, &err) != PGI_OK)
    {
        printf("# cannot open %s: %s\n", path, err.message);
        return NULL;
    }
    if (pgi_tokenizer_load(file, &tok, &err) != PGI_OK)
        printf("# cannot load tokenizer of %s: %s\n", path, err.message);
    gguf_close(file);   /* the tokenizer must not need it any more */
    return tok;
}

static void
print_ids(const char *label, const int32_t *ids, int n)
{
    printf("#   %s:", label);
    for (int i = 0; i < n && i < 64; i++)
        printf(" %d", ids[i]);
    printf("\n");
}

/* ------------------------------------------------------- test vectors */

static const char *const vocab_names[] = {
    "llama-spm", "phi-3", "gpt-2", "deepseek-coder", "deepseek-llm",
    "llama-bpe", "qwen2", "qwen35", "bert-bge",
};

/* How many cases each vocabulary's .inp holds: 46 in the 2025 set and in
 * the 2026 llama-bpe and qwen2 files, 50 for qwen35 (four more, with
 * combining marks). */
static const int vocab_case_counts[] = {
    46, 46, 46, 46, 46,
    46, 46, 50, 46,
};

static void
test_vocab_vectors(const char *name, int n_wanted)
{
    char path[1024], inp_path[1100], out_path[1100];
    size_t inp_size = 0, out_size = 0;
    char *inp, *outp;
    static test_case cases[MAX_CASES];
    int n_cases, n_lines, passed = 0, roundtrips = 0, n_lossless = 0;
    pgi_tokenizer *tok;
    int32_t ids[4096];
    char text[16384];

    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf", unit_models_dir(), name);
    snprintf(inp_path, sizeof(inp_path), "%s.inp", path);
    snprintf(out_path, sizeof(out_path), "%s.out", path);
    inp = test_read_file(inp_path, &inp_size);
    outp = test_read_file(out_path, &out_size);
    tok = load_vocab_file(path);
    if (!CHECK(inp != NULL && outp != NULL && tok != NULL, "%s: vocab and vectors load", name))
        goto done;

    n_cases = split_cases(inp, inp_size, cases);
    n_lines = read_expected(outp, cases, MAX_CASES);
    CHECK(n_cases == n_wanted && n_lines == n_cases, "%s: %d cases and %d expected lines (%d, %d)",
          name, n_wanted, n_wanted, n_cases, n_lines);

    for (int c = 0; c < n_cases; c++)
    {
        int n = 0;
        pgi_error err;
        pgi_status st = pgi_tokenize(tok, cases[c].text, cases[c].length, false, false, ids,
                                     (int) (sizeof(ids) / sizeof(ids[0])), &n, &err);
        bool same = st == PGI_OK && n == cases[c].n_expected &&
                    memcmp(ids, cases[c].expected, (size_t) n * sizeof(int32_t)) == 0;
        bool lossless;
        long back;

        if (same)
            passed++;
        else
        {
            printf("# %s case %d '%.*s' differs\n", name, c, (int) cases[c].length, cases[c].text);
            print_ids("expected", cases[c].expected, cases[c].n_expected);
            print_ids("got     ", ids, n);
        }

        /* Round trip.  SPM: llama_detokenize drops the prefix space, so the
         * text comes back.  BPE: pieces concatenate to the text (the gpt-2
         * space clean-up is checked separately), so join raw pieces. */
        if (pgi_tokenizer_kind_of(tok) == PGI_TOKENIZER_SPM)
            back = pgi_detokenize(tok, ids, n, false, false, text, sizeof(text));
        else
        {
            back = 0;
            for (int i = 0; i < n; i++)
                back += pgi_token_piece(tok, ids[i], text + back, sizeof(text) - (size_t) back);
        }
        /* Invalid UTF-8 is not expected to come back, nor text that
         * WordPiece lower-cases and splits. */
        lossless = pgi_utf8_is_valid((const unsigned char *) cases[c].text, cases[c].length) &&
                   pgi_tokenizer_kind_of(tok) != PGI_TOKENIZER_WPM;
        if (lossless)
        {
            n_lossless++;
            if (back == (long) cases[c].length && memcmp(text, cases[c].text, cases[c].length) == 0)
                roundtrips++;
            else
                printf("# %s case %d round trip gave '%.*s'\n", name, c, (int) back, text);
        }
    }
    CHECK(passed == n_cases, "%s: %d/%d test vectors match llama.cpp", name, passed, n_cases);
    CHECK(roundtrips == n_lossless, "%s: detokenize(tokenize(s)) == s for %d/%d valid-UTF-8 cases",
          name, roundtrips, n_lossless);

done:
    pgi_tokenizer_free(tok);
    pgi_free(inp);
    pgi_free(outp);
}

/* ------------------------------------------- hand-computed splits */

/* Split text with a pre-tokenizer and compare with the expected pieces,
 * given as one string with pieces separated by '|'. */
/* Text for a TAP line: control characters as \n, \r, \t. */
static const char *
shown(const char *text, char *buf, size_t cap)
{
    size_t n = 0;

    for (; *text && n + 3 < cap; text++)
    {
        if (*text == '\n' || *text == '\r' || *text == '\t')
        {
            buf[n++] = '\\';
            buf[n++] = *text == '\n' ? 'n' : (*text == '\r' ? 'r' : 't');
        }
        else
            buf[n++] = *text;
    }
    buf[n] = '\0';
    return buf;
}

static void
check_split(pgi_pretokenizer_kind kind, const char *kind_name, const char *text, const char *expected)
{
    uint32_t cps[256];
    size_t n = 0, at = 0, len = strlen(text);
    pgi_piece_list pieces = {0};
    pgi_error err;
    char got[1024];
    size_t g = 0, cp_at = 0, byte_at = 0;

    while (at < len && n < 256)
    {
        size_t used;

        cps[n++] = pgi_utf8_decode((const unsigned char *) text + at, len - at, &used);
        at += used;
    }
    char s1[256], s2[256], s3[1100];

    if (!CHECK(pgi_pretokenize(kind, cps, n, &pieces, &err) == PGI_OK, "%s split of '%s' runs",
               kind_name, shown(text, s1, sizeof(s1))))
        return;
    /* rebuild the pieces as text joined by '|' */
    for (size_t p = 0; p < pieces.count; p++)
    {
        size_t bytes = 0;

        for (size_t k = 0; k < pieces.lengths[p]; k++)
        {
            size_t used;

            pgi_utf8_decode((const unsigned char *) text + byte_at + bytes, len - byte_at - bytes, &used);
            bytes += used;
        }
        if (p > 0)
            got[g++] = '|';
        memcpy(got + g, text + byte_at, bytes);
        g += bytes;
        byte_at += bytes;
        cp_at += pieces.lengths[p];
    }
    got[g] = '\0';
    CHECK(strcmp(got, expected) == 0 && cp_at == n, "%s split of '%s' is '%s' (got '%s')", kind_name,
          shown(text, s1, sizeof(s1)), shown(expected, s2, sizeof(s2)), shown(got, s3, sizeof(s3)));
    pgi_free(pieces.lengths);
}

static void
test_pretokenizer_splits(void)
{
    /* Llama 3: contractions (any case), a letter run with one leading
     * non-letter, numbers in groups of up to three, a punctuation run with
     * the newlines after it, white space keeping one space for the next word. */
    check_split(PGI_PRE_LLAMA3, "llama3", "Hello world 12345 don't",
                "Hello| world| |123|45| don|'t");
    check_split(PGI_PRE_LLAMA3, "llama3", "I'M HERE'S", "I|'M| HERE|'S");
    check_split(PGI_PRE_LLAMA3, "llama3", "  Hello\n\n  x", " | Hello|\n\n| | x");
    check_split(PGI_PRE_LLAMA3, "llama3", "1234567", "123|456|7");
    check_split(PGI_PRE_LLAMA3, "llama3", "\xC3\x84\xC3\x96\xC3\xBC 3.14", "\xC3\x84\xC3\x96\xC3\xBC| |3|.|14");
    check_split(PGI_PRE_LLAMA3, "llama3", "ok!!!\r\nnext", "ok|!!!\r\n|next");
    check_split(PGI_PRE_LLAMA3, "llama3", "a \t b   ", "a| \t| b|   ");
    check_split(PGI_PRE_LLAMA3, "llama3", "(x)", "(x|)");
    /* Qwen2: the same, but every digit alone. */
    check_split(PGI_PRE_QWEN2, "qwen2", "Hello world 12345 don't",
                "Hello| world| |1|2|3|4|5| don|'t");
    check_split(PGI_PRE_QWEN2, "qwen2", "I'M HERE'S", "I|'M| HERE|'S");
    check_split(PGI_PRE_QWEN2, "qwen2", "  Hello\n\n  x", " | Hello|\n\n| | x");
    check_split(PGI_PRE_QWEN2, "qwen2", "x=42;\n", "x|=|4|2|;\n");
    /* Qwen 3.5: as qwen2, but combining marks (U+0301, U+0300) belong to the
     * letter run.  For qwen2 a mark is a non-letter: it leads the next letter
     * run or stands alone; for qwen35 a mark after "!" is the run the "!"
     * leads. */
    check_split(PGI_PRE_QWEN2, "qwen2", "re\xCC\x81sume\xCC\x81 x", "re|\xCC\x81sume|\xCC\x81| x");
    check_split(PGI_PRE_QWEN35, "qwen35", "re\xCC\x81sume\xCC\x81 x", "re\xCC\x81sume\xCC\x81| x");
    check_split(PGI_PRE_QWEN35, "qwen35", " \xCC\x80" "a 12!\xCC\x81", " \xCC\x80" "a| |1|2|!\xCC\x81");
    check_split(PGI_PRE_QWEN35, "qwen35", "I'M HERE'S", "I|'M| HERE|'S");
    /* GPT-2: lower-case contractions only, " ?" runs, digits unbounded. */
    check_split(PGI_PRE_GPT2, "gpt-2", "I'M HERE'S it's", "I|'|M| HERE|'|S| it|'s");
    check_split(PGI_PRE_GPT2, "gpt-2", "Hello world 12345", "Hello| world| 12345");
    check_split(PGI_PRE_GPT2, "gpt-2", "a  b\n\nc", "a| | b|\n|\n|c");
    /* deepseek-coder: newlines alone, " ?letters", " ?punctuation", digits alone. */
    check_split(PGI_PRE_DEEPSEEK_CODER, "deepseek-coder", "int x=12;\n", "int| x|=|1|2|;|\n");
    /* starcoder: digits alone first, then gpt-2. */
    check_split(PGI_PRE_STARCODER, "starcoder", "ab 123", "ab| |1|2|3");
    /* falcon: punctuation runs first, then gpt-2, then three-digit groups. */
    check_split(PGI_PRE_FALCON, "falcon", "a+=b 12345", "a|+=|b| |123|45");
}

/* ------------------------------------------------ streaming detokenizer */

/* A token's id found by scanning the vocabulary for its text. */
static int32_t
id_of_text(const pgi_tokenizer *tok, const char *text)
{
    for (int32_t t = 0; t < pgi_tokenizer_vocab_size(tok); t++)
    {
        size_t tl;
        const char *tt = pgi_tokenizer_token_text(tok, t, &tl);

        if (tl == strlen(text) && memcmp(tt, text, tl) == 0)
            return t;
    }
    return -1;
}

static bool
is_prefix_of_complete_chars(const char *whole, size_t whole_length, size_t emitted, size_t fed)
{
    /* what should be out after `fed` bytes: the longest prefix of whole[0..fed)
     * that ends on a character boundary */
    size_t boundary = 0, at = 0;

    while (at < whole_length)
    {
        size_t n = pgi_utf8_sequence_length((unsigned char) whole[at]);

        if (at + n > fed)
            break;
        at += n;
        boundary = at;
    }
    return emitted == boundary;
}

static void
test_streaming(void)
{
    char path[1024];
    pgi_tokenizer *spm, *gpt2;
    /* 1, 2, 3 and 4-byte characters */
    static const char text[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99z \xE3\x81\x93";
    size_t length = sizeof(text) - 1;
    pgi_detokenizer d;
    pgi_error err;
    char out[256];
    size_t total = 0, n;
    const char *chunk;
    bool boundaries_ok = true, valid_ok = true;

    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-llama-spm.gguf", unit_models_dir());
    spm = load_vocab_file(path);
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-gpt-2.gguf", unit_models_dir());
    gpt2 = load_vocab_file(path);
    if (!CHECK(spm != NULL && gpt2 != NULL, "vocabularies for streaming load"))
        goto done;

    /* One byte token per byte: the text split at every byte. */
    CHECK(pgi_detokenizer_init(&d, spm, false, &err) == PGI_OK, "detokenizer init");
    for (size_t i = 0; i < length; i++)
    {
        char spelled[8];
        int32_t id;

        snprintf(spelled, sizeof(spelled), "<0x%02X>", (unsigned char) text[i]);
        id = id_of_text(spm, spelled);
        chunk = pgi_detokenizer_push(&d, id, &n);
        if (chunk == NULL)
        {
            boundaries_ok = false;
            break;
        }
        if (!pgi_utf8_is_valid((const unsigned char *) chunk, n))
            valid_ok = false;
        memcpy(out + total, chunk, n);
        total += n;
        if (!is_prefix_of_complete_chars(text, length, total, i + 1))
            boundaries_ok = false;
    }
    chunk = pgi_detokenizer_flush(&d, &n);
    CHECK(boundaries_ok, "byte-by-byte: each push emits exactly the characters completed so far");
    CHECK(valid_ok, "byte-by-byte: every chunk is valid UTF-8");
    CHECK(n == 0 && total == length && memcmp(out, text, length) == 0,
          "byte-by-byte: the whole text comes out, nothing held at flush");

    /* A partial character at the end becomes U+FFFD at flush. */
    {
        int32_t e2 = id_of_text(spm, "<0xE2>");

        chunk = pgi_detokenizer_push(&d, e2, &n);
        CHECK(chunk != NULL && n == 0, "a lead byte alone emits nothing");
        chunk = pgi_detokenizer_flush(&d, &n);
        CHECK(n == 3 && memcmp(chunk, "\xEF\xBF\xBD", 3) == 0, "flush turns it into U+FFFD");
    }
    pgi_detokenizer_free(&d);

    /* gpt-2 tokens split the llama emoji across byte-level tokens. */
    {
        static const char llama_text[] = " this is \xF0\x9F\xA6\x99.cpp";
        int32_t ids[64];
        int n_ids = 0;

        CHECK(pgi_tokenize(gpt2, llama_text, strlen(llama_text), false, false, ids, 64, &n_ids,
                           &err) == PGI_OK, "gpt-2 tokenizes the llama text");
        CHECK(pgi_detokenizer_init(&d, gpt2, false, &err) == PGI_OK, "gpt-2 detokenizer init");
        total = 0;
        valid_ok = true;
        for (int i = 0; i < n_ids; i++)
        {
            chunk = pgi_detokenizer_push(&d, ids[i], &n);
            if (chunk == NULL || !pgi_utf8_is_valid((const unsigned char *) chunk, n))
                valid_ok = false;
            else
            {
                memcpy(out + total, chunk, n);
                total += n;
            }
        }
        pgi_detokenizer_flush(&d, &n);
        CHECK(valid_ok && total == strlen(llama_text) && memcmp(out, llama_text, total) == 0,
              "gpt-2 stream: valid chunks that join to the text (%d tokens)", n_ids);
        pgi_detokenizer_free(&d);
    }

    /* SPM: strip_leading_space drops the prefix space of the first piece. */
    {
        int32_t ids[16];
        int n_ids = 0;
        bool kept = false, stripped = false;

        pgi_tokenize(spm, "Hello world", 11, false, false, ids, 16, &n_ids, &err);
        pgi_detokenizer_init(&d, spm, true, &err);
        chunk = pgi_detokenizer_push(&d, ids[0], &n);
        stripped = n == 5 && memcmp(chunk, "Hello", 5) == 0;
        pgi_detokenizer_free(&d);
        pgi_detokenizer_init(&d, spm, false, &err);
        chunk = pgi_detokenizer_push(&d, ids[0], &n);
        kept = n == 6 && memcmp(chunk, " Hello", 6) == 0;
        pgi_detokenizer_free(&d);
        CHECK(stripped && kept, "SPM stream: leading space stripped only when asked");
    }

done:
    pgi_tokenizer_free(spm);
    pgi_tokenizer_free(gpt2);
}

/* ------------------------------------------------ API conventions */

static void
test_conventions(void)
{
    char path[1024];
    pgi_tokenizer *spm, *gpt2;
    pgi_error err;
    int32_t ids[64];
    int n = -1;
    char buf[256];
    long len;

    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-llama-spm.gguf", unit_models_dir());
    spm = load_vocab_file(path);
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-gpt-2.gguf", unit_models_dir());
    gpt2 = load_vocab_file(path);
    if (!CHECK(spm != NULL && gpt2 != NULL, "vocabularies load"))
        goto done;

    /* metadata of ggml-vocab-llama-spm.gguf: bos 1, eos 2, unk 0, add_bos */
    CHECK(pgi_tokenizer_bos(spm) == 1 && pgi_tokenizer_eos(spm) == 2 &&
          pgi_tokenizer_unknown(spm) == 0 && pgi_tokenizer_adds_bos(spm) &&
          !pgi_tokenizer_adds_eos(spm) && pgi_tokenizer_vocab_size(spm) == 32000,
          "llama-spm special ids from metadata");
    CHECK(pgi_tokenizer_token_type(spm, 0) == PGI_TOKEN_UNKNOWN &&
          pgi_tokenizer_token_type(spm, 1) == PGI_TOKEN_CONTROL &&
          pgi_tokenizer_token_type(spm, 3) == PGI_TOKEN_BYTE &&
          pgi_tokenizer_token_type(spm, 32000) == PGI_TOKEN_UNDEFINED, "token types");
    CHECK(pgi_tokenizer_is_end_of_generation(spm, 2) && !pgi_tokenizer_is_end_of_generation(spm, 1),
          "EOS ends generation, BOS does not");
    /* gpt-2: bos = eos = 50256 "<|endoftext|>", no BOS added by default */
    CHECK(pgi_tokenizer_bos(gpt2) == 50256 && pgi_tokenizer_eos(gpt2) == 50256 &&
          !pgi_tokenizer_adds_bos(gpt2) && pgi_tokenizer_eot(gpt2) == 50256 &&
          pgi_tokenizer_kind_of(gpt2) == PGI_TOKENIZER_BPE &&
          strcmp(pgi_tokenizer_pre_name(gpt2), "gpt-2") == 0, "gpt-2 metadata");

    /* add_bos puts BOS first; "Hello world" is 15043 3186 in llama-spm's vectors */
    CHECK(pgi_tokenize(spm, "Hello world", 11, true, false, ids, 64, &n, &err) == PGI_OK && n == 3 &&
          ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186, "add_bos: 1 15043 3186");

    /* capacity too small: the count needed, the first ids written */
    ids[0] = ids[1] = -7;
    CHECK(pgi_tokenize(spm, "Hello world", 11, true, false, ids, 1, &n, &err) ==
              PGI_ERR_INVALID_ARGUMENT && n == 3 && ids[0] == 1 && ids[1] == -7,
          "small buffer: PGI_ERR_INVALID_ARGUMENT, *n_tokens = 3, nothing past capacity");
    CHECK(pgi_tokenize(spm, "Hello world", 11, false, false, NULL, 0, &n, &err) ==
              PGI_ERR_INVALID_ARGUMENT && n == 2, "counting with a NULL buffer");
    CHECK(pgi_tokenize(spm, "", 0, false, false, NULL, 0, &n, &err) == PGI_OK && n == 0,
          "empty text: no tokens");
    {
        int32_t *all = NULL;
        int n_all = 0;

        CHECK(pgi_tokenize_alloc(spm, "Hello world", 11, true, false, &all, &n_all, &err) == PGI_OK &&
              n_all == 3 && all[2] == 3186, "pgi_tokenize_alloc");
        pgi_free(all);
    }

    /* parse_special: "<s>" in the text is BOS only when asked; after a
     * special token SPM prefixes a space again. */
    CHECK(pgi_tokenize(spm, "<s>Hello world", 14, false, true, ids, 64, &n, &err) == PGI_OK &&
          n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186,
          "parse_special: <s> becomes BOS");
    CHECK(pgi_tokenize(spm, "<s>Hello world", 14, false, false, ids, 64, &n, &err) == PGI_OK &&
          n > 3 && ids[0] != 1, "without parse_special <s> is text (%d tokens)", n);
    CHECK(pgi_tokenize(gpt2, "a<|endoftext|>", 14, false, true, ids, 64, &n, &err) == PGI_OK &&
          n == 2 && ids[1] == 50256, "gpt-2 parse_special: <|endoftext|>");

    /* Invalid UTF-8 never fails.  SPM falls back to the bytes (lossless
     * here; see tokenizer.h for the exception). */
    {
        static const char bad[] = "a\xFF\xC3 b\x80";
        static const char bad_spm[] = "ab\x80\x80 cd\xC3";
        size_t bl = sizeof(bad) - 1, bsl = sizeof(bad_spm) - 1;

        CHECK(pgi_tokenize(spm, bad_spm, bsl, false, false, ids, 64, &n, &err) == PGI_OK && n > 0,
              "SPM tokenizes invalid UTF-8");
        len = pgi_detokenize(spm, ids, n, false, false, buf, sizeof(buf));
        CHECK(len == (long) bsl && memcmp(buf, bad_spm, bsl) == 0, "SPM invalid UTF-8 round-trips");
        /* a lead byte 0xF_ takes the next three bytes with it, here the
         * U+2581 that stood for the space: it comes back as U+2581 */
        CHECK(pgi_tokenize(spm, bad, bl, false, false, ids, 64, &n, &err) == PGI_OK && n > 0 &&
                  pgi_detokenize(spm, ids, n, false, false, buf, sizeof(buf)) == 8 &&
                  memcmp(buf, "a\xFF\xC3\xE2\x96\x81" "b\x80", 8) == 0,
              "SPM: a space inside an invalid sequence comes back as U+2581");
        CHECK(pgi_tokenize(gpt2, bad, bl, false, false, ids, 64, &n, &err) == PGI_OK && n > 0,
              "BPE tokenizes invalid UTF-8");
        len = pgi_detokenize(gpt2, ids, n, false, false, buf, sizeof(buf));
        /* each invalid byte read as U+FFFD */
        CHECK(len == 12 && memcmp(buf, "a\xEF\xBF\xBD\xEF\xBF\xBD b\xEF\xBF\xBD", 12) == 0,
              "BPE reads invalid bytes as U+FFFD (got %ld bytes)", len);
    }

    /* pieces */
    CHECK(pgi_token_piece(spm, 15043, buf, sizeof(buf)) == 6 && memcmp(buf, " Hello", 6) == 0,
          "SPM piece: U+2581 -> space");
    CHECK(pgi_token_piece(spm, 13, buf, sizeof(buf)) == 1 && buf[0] == '\n', "SPM piece <0x0A> -> newline");
    CHECK(pgi_token_piece(spm, 1, buf, sizeof(buf)) == 0, "control piece is empty");
    CHECK(pgi_token_piece(spm, 15043, buf, 2) == 6 && buf[1] == 'H', "truncated piece reports length");
    CHECK(pgi_token_piece(spm, -1, buf, sizeof(buf)) == -1 && pgi_token_piece(spm, 32000, buf, 4) == -1,
          "bad id: -1");
    CHECK(pgi_token_piece(gpt2, 220, buf, sizeof(buf)) == 1 && buf[0] == ' ', "gpt-2 piece 'Ġ' -> space");

    /* detokenize: BOS dropped with remove_special, rendered with unparse_special */
    {
        int32_t seq[3] = {1, 15043, 3186};

        len = pgi_detokenize(spm, seq, 3, true, false, buf, sizeof(buf));
        CHECK(len == 12 && memcmp(buf, " Hello world", 12) == 0,
              "detokenize after removed BOS keeps the space (llama.cpp)");
        len = pgi_detokenize(spm, seq, 3, false, true, buf, sizeof(buf));
        CHECK(len == 15 && memcmp(buf, "<s> Hello world", 15) == 0, "unparse_special renders <s>");
        len = pgi_detokenize(spm, seq + 1, 2, false, false, buf, sizeof(buf));
        CHECK(len == 11 && memcmp(buf, "Hello world", 11) == 0, "no BOS: leading space stripped");
        len = pgi_detokenize(spm, seq, 3, false, false, buf, 4);
        CHECK(len == 12, "detokenize reports the full length when truncated");
    }
    /* gpt-2 clean-up of spaces (clean_up_tokenization_spaces) */
    {
        static const char spaced[] = "Hello , world ' s it 's";
        int32_t toks[64];
        int nt = 0;

        pgi_tokenize(gpt2, spaced, strlen(spaced), false, false, toks, 64, &nt, &err);
        len = pgi_detokenize(gpt2, toks, nt, false, false, buf, sizeof(buf));
        CHECK(len == 19 && memcmp(buf, "Hello, world's it's", 19) == 0,
              "gpt-2 detokenize cleans spaces: '%.*s'", (int) (len > 0 ? len : 0), buf);
    }

done:
    pgi_tokenizer_free(spm);
    pgi_tokenizer_free(gpt2);
}

/* ------------------------------------------------ hand-made vocabularies */

typedef struct made_vocab {
    uint8_t *bytes;
    gguf_file *file;
    pgi_tokenizer *tok;
    pgi_status status;
    pgi_error err;
} made_vocab;

/* Build a GGUF holding only tokenizer metadata and load it. */
static void
make_vocab(made_vocab *v, const char *model, const char *pre, const char *const *tokens, int n,
           const float *scores, const int32_t *types, const char *const *merges, int n_merges)
{
    gguf_writer *w = NULL;
    size_t size = 0;
    pgi_error err;

    memset(v, 0, sizeof(*v));
    v->status = PGI_ERR_INTERNAL;
    if (gguf_writer_create(&w, &err) != PGI_OK)
        return;
    gguf_writer_add_string(w, "general.architecture", "llama", &err);
    gguf_writer_add_string(w, "tokenizer.ggml.model", model, &err);
    if (pre != NULL)
        gguf_writer_add_string(w, "tokenizer.ggml.pre", pre, &err);
    gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, (uint64_t) n, &err);
    if (scores != NULL)
        gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_VALUE_FLOAT32, scores, (uint64_t) n, &err);
    if (types != NULL)
        gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_VALUE_INT32, types, (uint64_t) n, &err);
    if (merges != NULL)
        gguf_writer_add_string_array(w, "tokenizer.ggml.merges", merges, (uint64_t) n_merges, &err);
    if (gguf_writer_to_memory(w, &v->bytes, &size, &err) == PGI_OK &&
        gguf_open_memory(v->bytes, size, &v->file, &err) == PGI_OK)
        v->status = pgi_tokenizer_load(v->file, &v->tok, &v->err);
    gguf_writer_free(w);
}

static void
free_vocab(made_vocab *v)
{
    pgi_tokenizer_free(v->tok);
    gguf_close(v->file);
    pgi_free(v->bytes);
}

static bool
ids_equal(const int32_t *got, int n_got, const int32_t *want, int n_want)
{
    return n_got == n_want && memcmp(got, want, (size_t) n_want * sizeof(int32_t)) == 0;
}

static void
test_made_vocabularies(void)
{
    made_vocab v;
    int32_t ids[64];
    int n = 0;
    pgi_error err;

    /* SPM, scores chosen by hand.  "abc" is "▁abc" after the prefix space:
     * pairs ▁a -3, ab -1, bc -0.5: bc first; then a+bc = abc -2 beats ▁a -3;
     * ▁abc is not a token: [▁, abc].  A left-to-right longest match would
     * give [▁a, bc]. */
    {
        static const char *const tokens[] = {
            "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc", "abc",
            "\xE2\x96\x81" "a", "<0xC3>", "<0xA9>", "<sep>",
        };
        static const float scores[] = {0, 0, 0, -5, -6, -6, -6, -1, -0.5f, -2, -3, 0, 0, 0};
        static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, 6, 4};

        make_vocab(&v, "llama", "default", tokens, 14, scores, types, NULL, 0);
        if (CHECK(v.status == PGI_OK, "hand-made SPM vocabulary loads (%s)", v.err.message))
        {
            static const int32_t want_abc[] = {3, 9};
            static const int32_t want_ae[] = {10, 11, 12};
            static const int32_t want_sep[] = {10, 13, 3, 9};
            static const int32_t want_bos_sep[] = {1, 3, 9, 13};

            CHECK(pgi_tokenize(v.tok, "abc", 3, false, false, ids, 64, &n, &err) == PGI_OK &&
                  ids_equal(ids, n, want_abc, 2), "SPM merges by score: abc -> [3 9]");
            /* "▁aé": ▁a merges; é is not a token: byte fallback <0xC3> <0xA9> */
            CHECK(pgi_tokenize(v.tok, "a\xC3\xA9", 3, false, false, ids, 64, &n, &err) == PGI_OK &&
                  ids_equal(ids, n, want_ae, 3), "SPM byte fallback: a\xC3\xA9 -> [10 11 12]");
            /* a user-defined token is cut out even without parse_special,
             * and the text after it gets a prefix space again */
            CHECK(pgi_tokenize(v.tok, "a<sep>abc", 9, false, false, ids, 64, &n, &err) == PGI_OK &&
                  ids_equal(ids, n, want_sep, 4), "SPM user-defined token: a<sep>abc -> [10 13 3 9]");
            /* control token <s> only with parse_special; after it "abc" is
             * prefixed; "<sep>" ends the text */
            CHECK(pgi_tokenize(v.tok, "<s>abc<sep>", 11, true, true, ids, 64, &n, &err) == PGI_OK &&
                  n == 5 && ids[0] == 1 && ids_equal(ids + 1, n - 1, want_bos_sep, 4),
                  "SPM parse_special: BOS + <s>abc<sep> -> [1 1 3 9 13]");
        }
        free_vocab(&v);
    }

    /* Byte-level BPE, merges ranked by hand: "b c" (0) before "a b" (1):
     * "abc" -> a, bc (no "a bc" merge) -> [a, bc]; " ab" -> Ġ a b ->
     * "a b" (1) then "Ġ ab" (2) -> [Ġab]. */
    {
        static const char *const tokens[] = {
            "a", "b", "c", "\xC4\xA0", "ab", "bc", "\xC4\xA0" "ab", "<|endoftext|>",
        };
        static const char *const merges[] = {"b c", "a b", "\xC4\xA0 ab"};

        make_vocab(&v, "gpt2", "gpt-2", tokens, 8, NULL, NULL, merges, 3);
        if (CHECK(v.status == PGI_OK, "hand-made BPE vocabulary loads (%s)", v.err.message))
        {
            static const int32_t want[] = {0, 5, 6};
            char out[64];

            CHECK(pgi_tokenize(v.tok, "abc ab", 6, false, false, ids, 64, &n, &err) == PGI_OK &&
                  ids_equal(ids, n, want, 3), "BPE merges by rank: 'abc ab' -> [0 5 6]");
            CHECK(pgi_detokenize(v.tok, ids, n, false, false, out, sizeof(out)) == 6 &&
                  memcmp(out, "abc ab", 6) == 0, "BPE detokenize: 'abc ab'");
            CHECK(pgi_tokenizer_is_end_of_generation(v.tok, 7) &&
                  pgi_tokenizer_token_type(v.tok, 7) == PGI_TOKEN_CONTROL,
                  "<|endoftext|> ends generation and counts as control");
        }
        free_vocab(&v);
    }

    /* Harmony (gpt-oss): with <|return|> and <|call|> present, <|end|> closes
     * a message but not the reply; a detokenizer told to render specials
     * keeps the channel markers. */
    {
        static const char *const tokens[] = {"a", "b", "<|end|>", "<|return|>", "<|call|>", "<|channel|>"};
        static const int32_t types[] = {1, 1, 3, 3, 3, 3};
        static const char *const merges[] = {"a b"};

        make_vocab(&v, "gpt2", "gpt-2", tokens, 6, NULL, types, merges, 1);
        if (CHECK(v.status == PGI_OK, "harmony-like vocabulary loads (%s)", v.err.message))
        {
            pgi_detokenizer d;
            pgi_error derr;
            size_t got = 0;
            const char *out;

            CHECK(!pgi_tokenizer_is_end_of_generation(v.tok, 2) &&
                      pgi_tokenizer_is_end_of_generation(v.tok, 3) &&
                      pgi_tokenizer_is_end_of_generation(v.tok, 4),
                  "harmony: <|return|> and <|call|> end generation, <|end|> does not");
            pgi_detokenizer_init(&d, v.tok, false, &derr);
            out = pgi_detokenizer_push(&d, 5, &got);
            CHECK(out != NULL && got == 0, "a control token streams as nothing by default");
            d.render_special = true;
            out = pgi_detokenizer_push(&d, 5, &got);
            CHECK(out != NULL && got == 11 && memcmp(out, "<|channel|>", 11) == 0,
                  "with render_special a control token streams as its text");
            pgi_detokenizer_free(&d);
        }
        free_vocab(&v);
    }
    {
        static const char *const tokens[] = {"a", "b", "<|end|>"};
        static const int32_t types[] = {1, 1, 3};
        static const char *const merges[] = {"a b"};

        make_vocab(&v, "gpt2", "gpt-2", tokens, 3, NULL, types, merges, 1);
        if (CHECK(v.status == PGI_OK, "phi-3-like vocabulary loads (%s)", v.err.message))
            CHECK(pgi_tokenizer_is_end_of_generation(v.tok, 2),
                  "without <|return|> and <|call|>, <|end|> ends generation (phi-3)");
        free_vocab(&v);
    }

    /* Refusals, by name. */
    {
        static const char *const tokens[] = {"a", "b"};
        static const char *const merges[] = {"a b"};

        make_vocab(&v, "rwkv", NULL, tokens, 2, NULL, NULL, NULL, 0);
        CHECK(v.status == PGI_ERR_UNSUPPORTED && strstr(v.err.message, "'rwkv'") != NULL,
              "unknown tokenizer model refused by name: %s", v.err.message);
        free_vocab(&v);
        make_vocab(&v, "gpt2", "no-such-pre", tokens, 2, NULL, NULL, merges, 1);
        CHECK(v.status == PGI_ERR_UNSUPPORTED && strstr(v.err.message, "'no-such-pre'") != NULL,
              "unknown pre-tokenizer refused by name: %s", v.err.message);
        free_vocab(&v);
        make_vocab(&v, "gpt2", "qwen2", tokens, 2, NULL, NULL, NULL, 0);
        CHECK(v.status == PGI_ERR_FORMAT, "BPE without merges: format error");
        free_vocab(&v);
        for (size_t i = 0; i < 12; i++)
        {
            static const char *const names[] = {
                "default", "llama3", "llama-bpe", "qwen2", "qwen35", "deepseek-llm",
                "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "gpt-2",
            };

            make_vocab(&v, "gpt2", names[i], tokens, 2, NULL, NULL, merges, 1);
            CHECK(v.status == PGI_OK && strcmp(pgi_tokenizer_pre_name(v.tok), names[i]) == 0,
                  "pre-tokenizer '%s' accepted", names[i]);
            free_vocab(&v);
        }
    }
}

/* ------------------------------------------------ gpt-4o (o200k) splits */

/* test/unit/data/pretokenize-gpt-4o.txt (its header says how llama.cpp
 * made it), or the same file under $PGI_TEST_DATA. */
static const char *
gpt4o_vectors_path(void)
{
    static char path[4096];
    const char *dir = getenv("PGI_TEST_DATA");

    snprintf(path, sizeof(path), "%s/pretokenize-gpt-4o.txt", dir != NULL ? dir : "test/unit/data");
    return path;
}

/* One line of the vectors file: "piece" "piece" ...  Appends the bytes to
 * text and each piece's byte length to lengths; false when malformed. */
static bool
parse_quoted_pieces(const char *line, const char *line_end, char *text, size_t text_cap,
                    size_t *text_length, size_t *lengths, size_t lengths_cap, size_t *n_pieces)
{
    const char *p = line;

    *text_length = 0;
    *n_pieces = 0;
    while (p < line_end)
    {
        size_t begin = *text_length;

        if (*n_pieces > 0)
        {
            if (*p != ' ')
                return false;
            p++;
        }
        if (p >= line_end || *p != '"' || *n_pieces == lengths_cap)
            return false;
        p++;
        while (p < line_end && *p != '"')
        {
            char c = *p++;

            if (c == '\\')
            {
                if (p >= line_end)
                    return false;
                c = *p++;
                if (c == 'n')
                    c = '\n';
                else if (c == 'r')
                    c = '\r';
                else if (c == 't')
                    c = '\t';
                else if (c == 'x')
                {
                    char hex[3] = {0};

                    if (line_end - p < 2)
                        return false;
                    hex[0] = p[0];
                    hex[1] = p[1];
                    c = (char) strtol(hex, NULL, 16);
                    p += 2;
                }
                else if (c != '"' && c != '\\')
                    return false;
            }
            if (*text_length == text_cap)
                return false;
            text[(*text_length)++] = c;
        }
        if (p >= line_end || *text_length == begin)
            return false;       /* unterminated, or an empty piece */
        p++;
        lengths[(*n_pieces)++] = *text_length - begin;
    }
    return *n_pieces > 0;
}

static void
test_gpt4o_vectors(void)
{
    size_t size = 0;
    char *data = test_read_file(gpt4o_vectors_path(), &size);
    int n_cases = 0, passed = 0, malformed = 0, line_number = 0;
    static char text[4096];
    static uint32_t cps[4096];
    static size_t byte_lengths[1024], cp_lengths[1024];

    if (!CHECK(data != NULL, "gpt-4o vectors readable (%s)", gpt4o_vectors_path()))
        return;
    for (char *line = data; line < data + size;)
    {
        char *end = memchr(line, '\n', (size_t) (data + size - line));
        size_t text_length, n_pieces, n_cps = 0, at = 0;
        pgi_piece_list pieces = {0};
        pgi_error err;
        bool same;

        if (end == NULL)
            end = data + size;
        line_number++;
        if (line[0] == '#')
        {
            line = end + 1;
            continue;
        }
        n_cases++;
        if (!parse_quoted_pieces(line, end, text, sizeof(text), &text_length, byte_lengths, 1024,
                                 &n_pieces))
        {
            printf("# gpt-4o vectors line %d is malformed\n", line_number);
            malformed++;
            line = end + 1;
            continue;
        }
        /* the expected pieces in code points */
        for (size_t k = 0; k < n_pieces; k++)
        {
            size_t piece_end = at + byte_lengths[k];

            cp_lengths[k] = 0;
            while (at < piece_end)
            {
                size_t used;

                cps[n_cps++] = pgi_utf8_decode((const unsigned char *) text + at, text_length - at,
                                               &used);
                at += used;
                cp_lengths[k]++;
            }
        }
        same = at == text_length &&
               pgi_pretokenize(PGI_PRE_GPT4O, cps, n_cps, &pieces, &err) == PGI_OK &&
               pieces.count == n_pieces;
        for (size_t k = 0; same && k < n_pieces; k++)
            same = pieces.lengths[k] == cp_lengths[k];
        if (same)
            passed++;
        else
        {
            printf("# gpt-4o vectors line %d differs: expected", line_number);
            for (size_t k = 0; k < n_pieces; k++)
                printf(" %zu", cp_lengths[k]);
            printf(", got");
            for (size_t k = 0; k < pieces.count; k++)
                printf(" %u", pieces.lengths[k]);
            printf(" (code points a piece)\n");
        }
        pgi_free(pieces.lengths);
        line = end + 1;
    }
    CHECK(malformed == 0 && n_cases == 205, "gpt-4o vectors: 205 well-formed cases (%d, %d malformed)",
          n_cases, malformed);
    CHECK(passed == n_cases, "gpt-4o: %d/%d splits match llama.cpp's", passed, n_cases);
    pgi_free(data);

    /* A few by hand, in llama.cpp's sense of case: only ASCII letters have
     * one, and a mark ends a letter run. */
    check_split(PGI_PRE_GPT4O, "gpt-4o", "getHTTPResponseCode", "get|HTTPResponse|Code");
    check_split(PGI_PRE_GPT4O, "gpt-4o", "HELLO'S world's", "HELLO'S| world's");
    check_split(PGI_PRE_GPT4O, "gpt-4o", "\xC3\x89" "COLE", "\xC3\x89|COLE");   /* ÉCOLE */
    check_split(PGI_PRE_GPT4O, "gpt-4o", "1234567 ok?\n/x", "123|456|7| ok|?\n/|x");
}

/* The names llama.cpp maps to the gpt-4o split are accepted, and the
 * tokenizer splits with it before merging: "aBc" is "a" "Bc" here, so the
 * lower-ranked "a B" merge never applies and [a, Bc] comes out. */
static void
test_gpt4o_names(void)
{
    static const char *const names[] = {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"};
    static const char *const tokens[] = {"a", "B", "c", "aB", "aBc", "Bc"};
    static const char *const merges[] = {"a B", "aB c", "B c"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    {
        made_vocab v;
        int32_t ids[8];
        int n = 0;
        pgi_error err;

        make_vocab(&v, "gpt2", names[i], tokens, 6, NULL, NULL, merges, 3);
        CHECK(v.status == PGI_OK && strcmp(pgi_tokenizer_pre_name(v.tok), names[i]) == 0 &&
                  pgi_tokenize(v.tok, "aBc", 3, false, false, ids, 8, &n, &err) == PGI_OK && n == 2 &&
                  ids[0] == 0 && ids[1] == 5,
              "pre-tokenizer '%s' accepted; 'aBc' -> [0 5]", names[i]);
        free_vocab(&v);
    }
}

/* ------------------------------------------------ robustness and speed */

static void
test_random_and_speed(void)
{
    uint64_t state = 0x9E3779B97F4A7C15ull;
    char bytes[600];
    int32_t ids[2048];
    bool all_ok = true;

    for (size_t vi = 0; vi < sizeof(vocab_names) / sizeof(vocab_names[0]); vi++)
    {
        char path[1024];
        pgi_tokenizer *tok;

        snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-%s.gguf", unit_models_dir(), vocab_names[vi]);
        tok = load_vocab_file(path);
        if (tok == NULL)
        {
            all_ok = false;
            continue;
        }
        for (int round = 0; round < 200; round++)
        {
            size_t len = (size_t) (round * 3 % 600);
            int n = 0;
            pgi_error err;
            char back[8192];

            for (size_t i = 0; i < len; i++)
            {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                /* mostly ASCII, some high bytes, spaces and newlines */
                bytes[i] = (state >> 33) % 5 == 0 ? (char) ((state >> 40) & 0xFF) : " \naZ0.'<>"[(state >> 45) % 9];
            }
            if (pgi_tokenize(tok, bytes, len, round & 1, round & 2, ids, 2048, &n, &err) != PGI_OK ||
                pgi_detokenize(tok, ids, n, false, true, back, sizeof(back)) < 0)
                all_ok = false;
        }

        /* speed: a text of about 10k tokens (printed, not asserted) */
        {
            static const char sentence[] =
                "The quick brown fox, aged 12345, jumps over the lazy dog's back; "
                "na\xC3\xAFve caf\xC3\xA9s \xF0\x9F\xA6\x99 \xE4\xB8\xAD\xE6\x96\x87 don't stop.\n";
            size_t sl = sizeof(sentence) - 1, reps = 400;
            char *big = malloc(sl * reps);
            int32_t *many = NULL;
            int n_many = 0;
            pgi_error err;
            struct timespec t0, t1;

            for (size_t r = 0; r < reps; r++)
                memcpy(big + r * sl, sentence, sl);
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (pgi_tokenize_alloc(tok, big, sl * reps, false, false, &many, &n_many, &err) != PGI_OK)
                all_ok = false;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            printf("# %s: %zu bytes -> %d tokens in %.2f ms\n", vocab_names[vi], sl * reps, n_many,
                   (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6);
            pgi_free(many);
            free(big);
        }
        pgi_tokenizer_free(tok);
    }
    CHECK(all_ok, "random bytes through every vocabulary: no failure");
}

/* ------------------------------------------------ stories260K golden text */

/* The golden file's ids (generated from BOS) decode to its text, which was
 * produced by llama2.c (it drops the space after BOS, as llama_detokenize
 * does for a sequence without BOS). */
static void
test_stories_golden(void)
{
    char path[1024];
    size_t size = 0;
    char *golden;
    const char *text;
    pgi_tokenizer *tok;
    int32_t ids[512];
    int n = 0;
    static char out[8192];
    long len;
    size_t text_length;

    golden = test_read_file(test_golden_path(), &size);
    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    tok = load_vocab_file(path);
    if (!CHECK(golden != NULL && tok != NULL, "stories260K vocabulary and golden file load"))
        goto done;
    n = test_golden_ids(golden, ids, 512);
    text = test_golden_text(golden);
    if (!CHECK(n > 0 && text != NULL, "golden file has ids and text"))
        goto done;
    text_length = strlen(text);
    while (text_length > 0 && (text[text_length - 1] == '\n' || text[text_length - 1] == ' '))
        text_length--;
    CHECK(n == 257 && ids[0] == 1, "golden ids: BOS + 256 (%d)", n);
    len = pgi_detokenize(tok, ids + 1, n - 1, false, false, out, sizeof(out));
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
        len--;
    CHECK(len == (long) text_length && memcmp(out, text, text_length) == 0,
          "stories260K: golden ids detokenize to the golden text (%ld vs %zu bytes)", len, text_length);
    {
        pgi_detokenizer d;
        pgi_error err;
        size_t total = 0, k;
        bool fits = true;

        pgi_detokenizer_init(&d, tok, true, &err);
        for (int i = 1; i < n && fits; i++)
        {
            const char *chunk = pgi_detokenizer_push(&d, ids[i], &k);

            fits = chunk != NULL && total + k <= sizeof(out);
            if (fits)
            {
                memcpy(out + total, chunk, k);
                total += k;
            }
        }
        pgi_detokenizer_flush(&d, &k);
        pgi_detokenizer_free(&d);
        while (total > 0 && (out[total - 1] == '\n' || out[total - 1] == ' '))
            total--;
        CHECK(fits && total == text_length && memcmp(out, text, text_length) == 0,
              "stories260K: streamed with strip_leading_space gives the golden text");
    }

done:
    pgi_tokenizer_free(tok);
    pgi_free(golden);
}

int
main(void)
{
    for (size_t i = 0; i < sizeof(vocab_names) / sizeof(vocab_names[0]); i++)
        test_vocab_vectors(vocab_names[i], vocab_case_counts[i]);
    test_pretokenizer_splits();
    test_streaming();
    test_conventions();
    test_made_vocabularies();
    test_gpt4o_vectors();
    test_gpt4o_names();
    test_stories_golden();
    test_random_and_speed();
    return unit_done();
}
