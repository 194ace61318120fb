/*
 * oracle.c — llama.cpp's pre-token split of each case of an .inp file, read
 * off the token pieces of a vocabulary made by make_vocab.py (in which BPE
 * merges every piece completely).  Links against a prebuilt libllama (the
 * npm package node-llama-cpp's); make_vectors.sh builds and runs it.  Not
 * part of the build or of make test.
 *
 * Usage: oracle VOCAB.gguf CASES.inp LMAX BACKEND_DIR
 * Prints one line per case: its pieces as double-quoted strings (escapes
 * \n \r \t \" \\ \xHH) separated by a space.  Exits 2 when a boundary is
 * not proven: two adjacent pieces of more than LMAX characters together
 * (those could be one pre-token the vocabulary cannot merge).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static size_t
count_chars(const char *s, size_t n)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++)
        if (((unsigned char) s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static void
quiet(enum ggml_log_level level, const char *text, void *user_data)
{
    (void) level;
    (void) text;
    (void) user_data;
}

static void
print_quoted(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++)
    {
        unsigned char c = (unsigned char) s[i];

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\r')
            printf("\\r");
        else if (c == '\t')
            printf("\\t");
        else if (c < 0x20 || c == 0x7F)
            printf("\\x%02X", c);
        else
            putchar(c);
    }
    putchar('"');
}

int
main(int argc, char **argv)
{
    static const char separator[] = "\n__ggml_vocab_test__\n";
    static char input[1 << 20];
    static llama_token tokens[1 << 16];
    static char piece[1 << 16];
    struct llama_model_params params;
    struct llama_model *model;
    const struct llama_vocab *vocab;
    size_t lmax, size;
    int n_cases = 0, unproven = 0;
    FILE *f;

    if (argc != 5)
    {
        fprintf(stderr, "usage: %s VOCAB.gguf CASES.inp LMAX BACKEND_DIR\n", argv[0]);
        return 1;
    }
    lmax = (size_t) atoi(argv[3]);
    if (getenv("ORACLE_LOGS") == NULL)
        llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[4]);
    llama_backend_init();
    params = llama_model_default_params();
    params.vocab_only = true;
    model = llama_model_load_from_file(argv[1], params);
    if (model == NULL)
    {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    vocab = llama_model_get_vocab(model);

    f = fopen(argv[2], "rb");
    if (f == NULL)
    {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    size = fread(input, 1, sizeof(input) - 1, f);
    fclose(f);
    input[size] = '\0';

    for (char *p = input; p < input + size;)
    {
        char *end = strstr(p, separator);
        size_t length = end != NULL ? (size_t) (end - p) : strlen(p);
        size_t covered = 0, previous = 0;
        int n = llama_tokenize(vocab, p, (int) length, tokens, 1 << 16, false, false);

        if (n < 0)
        {
            fprintf(stderr, "case %d: llama_tokenize failed\n", n_cases);
            return 1;
        }
        for (int i = 0; i < n; i++)
        {
            int k = llama_token_to_piece(vocab, tokens[i], piece, sizeof(piece), 0, false);
            size_t chars;

            if (k < 0 || covered + (size_t) k > length || memcmp(piece, p + covered, (size_t) k) != 0)
            {
                fprintf(stderr, "case %d: the pieces are not the text\n", n_cases);
                return 1;
            }
            chars = count_chars(piece, (size_t) k);
            if (i > 0 && previous + chars > lmax)
            {
                fprintf(stderr, "case %d: boundary before piece %d not proven\n", n_cases, i);
                unproven++;
            }
            if (i > 0)
                putchar(' ');
            print_quoted(piece, (size_t) k);
            previous = chars;
            covered += (size_t) k;
        }
        if (covered != length)
        {
            fprintf(stderr, "case %d: the pieces cover %zu of %zu bytes\n", n_cases, covered, length);
            return 1;
        }
        putchar('\n');
        n_cases++;
        if (end == NULL)
            break;
        p = end + strlen(separator);
    }
    fprintf(stderr, "%d cases, %d boundaries not proven\n", n_cases, unproven);
    llama_model_free(model);
    return unproven > 0 ? 2 : 0;
}
