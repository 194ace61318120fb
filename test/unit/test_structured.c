/*
 * test_structured.c — constrained decoding (engine/constraint.c,
 * engine/json_schema.c, the engine's constrained sampling).
 *
 *  1. The compilers against hand-written texts: what a regex, a choice
 *     list and a schema accept and refuse, and the errors of malformed and
 *     unsupported specs.
 *  2. End to end on stories260K (vocab 512, SPM) and on a synthetic model
 *     with llama-bpe's 128K vocabulary: every schema of
 *     data/structured_schemas.txt, greedy and random seeds; each text is
 *     checked by a JSON reader written here (independent of the engine's)
 *     and by the shapes the schema names (hand-written checks below), and
 *     written with its schema to $PGI_STRUCTURED_OUT (JSON lines) for
 *     test/structured/validate.js (ajv, an independent JSON Schema
 *     validator).  Choices always give a member; greedy outputs repeat,
 *     alone and batched together.
 *  3. The overhead of the constraint per token (printed, never asserted).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "constraint.h"
#include "engine.h"
#include "test_support.h"
#include "unit.h"

/* ------------------------------------------------------------ an independent JSON reader */

typedef struct jr {
    const char *s;
    size_t n, i;
} jr;

static void
jr_ws(jr *r)
{
    while (r->i < r->n && strchr(" \t\r\n", r->s[r->i]) != NULL)
        r->i++;
}

static bool jr_value(jr *r);

static bool
jr_string(jr *r)
{
    if (r->i >= r->n || r->s[r->i] != '"')
        return false;
    for (r->i++; r->i < r->n; r->i++)
    {
        unsigned char c = (unsigned char) r->s[r->i];

        if (c == '"')
        {
            r->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\')
        {
            r->i++;
            if (r->i >= r->n || strchr("\"\\/bfnrtu", r->s[r->i]) == NULL)
                return false;
        }
    }
    return false;
}

static bool
jr_digits(jr *r)
{
    size_t start = r->i;

    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
        r->i++;
    return r->i > start;
}

static bool
jr_value(jr *r)
{
    jr_ws(r);
    if (r->i >= r->n)
        return false;
    switch (r->s[r->i])
    {
        case '"':
            return jr_string(r);
        case '{':
        case '[':
            {
                char close = r->s[r->i] == '{' ? '}' : ']';
                bool object = close == '}';

                r->i++;
                jr_ws(r);
                if (r->i < r->n && r->s[r->i] == close)
                    return r->i++, true;
                for (;;)
                {
                    jr_ws(r);
                    if (object)
                    {
                        if (!jr_string(r))
                            return false;
                        jr_ws(r);
                        if (r->i >= r->n || r->s[r->i++] != ':')
                            return false;
                    }
                    if (!jr_value(r))
                        return false;
                    jr_ws(r);
                    if (r->i < r->n && r->s[r->i] == ',')
                    {
                        r->i++;
                        continue;
                    }
                    return r->i < r->n && r->s[r->i++] == close;
                }
            }
        default:
            if (r->n - r->i >= 4 && memcmp(r->s + r->i, "true", 4) == 0)
                return r->i += 4, true;
            if (r->n - r->i >= 5 && memcmp(r->s + r->i, "false", 5) == 0)
                return r->i += 5, true;
            if (r->n - r->i >= 4 && memcmp(r->s + r->i, "null", 4) == 0)
                return r->i += 4, true;
            if (r->s[r->i] == '-')
                r->i++;
            if (r->i < r->n && r->s[r->i] == '0')
                r->i++;
            else if (!jr_digits(r))
                return false;
            if (r->i < r->n && r->s[r->i] == '.')
            {
                r->i++;
                if (!jr_digits(r))
                    return false;
            }
            return true;
    }
}

static bool
is_json(const char *s, size_t n)
{
    jr r = {s, n, 0};

    if (!jr_value(&r))
        return false;
    jr_ws(&r);
    return r.i == n;
}

/* ------------------------------------------------------------ compilers */

static pgi_constraint *
compile(pgi_constraint_kind kind, const char *text, size_t length, pgi_status *st, pgi_error *err)
{
    pgi_constraint_spec spec = {kind, text, length};
    pgi_constraint *c = NULL;

    *st = pgi_constraint_compile(&spec, &c, err);
    return c;
}

static bool
accepts(pgi_constraint_kind kind, const char *spec, const char *text)
{
    pgi_status st;
    pgi_error err;
    pgi_constraint *c = compile(kind, spec, strlen(spec), &st, &err);
    bool yes;

    if (c == NULL)
    {
        printf("# compile %s: %s\n", spec, err.message);
        return false;
    }
    yes = pgi_constraint_matches(c, text, strlen(text));
    pgi_constraint_free(c);
    return yes;
}

static pgi_status
compile_error(pgi_constraint_kind kind, const char *spec, const char *expect_in_message)
{
    pgi_status st;
    pgi_error err;
    pgi_constraint *c = compile(kind, spec, strlen(spec), &st, &err);

    if (c != NULL)
    {
        pgi_constraint_free(c);
        return PGI_OK;
    }
    if (expect_in_message != NULL && strstr(err.message, expect_in_message) == NULL)
    {
        printf("# message \"%s\" lacks \"%s\"\n", err.message, expect_in_message);
        return PGI_ERR_INTERNAL;
    }
    return st;
}

#define RX PGI_CONSTRAINT_REGEX
#define JS PGI_CONSTRAINT_JSON_SCHEMA

static void
test_compilers(void)
{
    CHECK(accepts(RX, "a(b|c)*d", "abcbd") && accepts(RX, "a(b|c)*d", "ad") &&
          !accepts(RX, "a(b|c)*d", "abxd") && !accepts(RX, "a(b|c)*d", "abc"),
          "regex: alternation and star, whole match");
    CHECK(accepts(RX, "^[0-9]{3}-\\d{2,}$", "123-45678") && !accepts(RX, "[0-9]{3}-\\d{2,}", "12-45"),
          "regex: classes, counted repetition, anchors at the ends");
    CHECK(accepts(RX, "[^a]", "\xc3\xa9") && !accepts(RX, "[^a]", "a") && accepts(RX, ".", "\xe2\x82\xac") &&
          !accepts(RX, ".", "\n"), "regex: negated classes and . take any UTF-8 character");
    CHECK(accepts(RX, "\xc3\xa9+", "\xc3\xa9\xc3\xa9") && accepts(RX, "[\xc3\xa0-\xc3\xbf]x", "\xc3\xa9x") &&
          !accepts(RX, "[\xc3\xa0-\xc3\xbf]x", "ax"), "regex: non-ASCII literals and ranges");
    CHECK(accepts(RX, "\\w+\\s\\.\\*", "ab_9 .*") && accepts(RX, "x?y+?", "yy"), "regex: escapes, lazy suffix");
    CHECK(compile_error(RX, "(ab", "missing )") == PGI_ERR_INVALID_ARGUMENT, "regex: missing ) is malformed");
    CHECK(compile_error(RX, "a**", NULL) == PGI_ERR_INVALID_ARGUMENT, "regex: nothing to repeat");
    CHECK(compile_error(RX, "(a)\\1", "backreferences") == PGI_ERR_UNSUPPORTED, "regex: backreferences refused by name");
    CHECK(compile_error(RX, "(?=a)a", "lookahead") == PGI_ERR_UNSUPPORTED, "regex: lookahead refused by name");
    CHECK(compile_error(RX, "\\p{L}", "Unicode property") == PGI_ERR_UNSUPPORTED, "regex: \\p refused by name");
    CHECK(compile_error(RX, "a{2000}", "1000") == PGI_ERR_UNSUPPORTED, "regex: huge counts refused");
    CHECK(compile_error(RX, "[b-a]", "out of order") == PGI_ERR_INVALID_ARGUMENT, "regex: reversed range");

    {
        const char choices[] = "yes\0no\0maybe\0";
        pgi_status st;
        pgi_error err;
        pgi_constraint *c = compile(PGI_CONSTRAINT_CHOICES, choices, sizeof(choices) - 1, &st, &err);

        CHECK(c != NULL && pgi_constraint_matches(c, "maybe", 5) && pgi_constraint_matches(c, "no", 2) &&
              !pgi_constraint_matches(c, "ye", 2) && !pgi_constraint_matches(c, "yesno", 5),
              "choices: exactly one of them");
        pgi_constraint_free(c);
        c = compile(PGI_CONSTRAINT_CHOICES, "a\0\0", 3, &st, &err);
        CHECK(c == NULL && st == PGI_ERR_INVALID_ARGUMENT, "choices: an empty choice is refused");
    }

    {
        const char *person = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, "
                             "\"age\": {\"type\": \"integer\"}, \"nick\": {\"type\": \"string\"}}, "
                             "\"required\": [\"name\", \"age\"]}";

        CHECK(accepts(JS, person, "{\"name\": \"Bo\", \"age\": 3}") &&
              accepts(JS, person, "{\"name\": \"B\\\"o\", \"age\": -30, \"nick\": \"\xc3\xa9\"}"),
              "schema: required and optional properties");
        CHECK(!accepts(JS, person, "{\"name\": \"Bo\"}") && !accepts(JS, person, "{\"name\": \"Bo\", \"age\": 3.5}") &&
              !accepts(JS, person, "{\"name\": \"Bo\", \"age\": 03}") &&
              !accepts(JS, person, "{\"name\": \"a\nb\", \"age\": 1}"),
              "schema: a missing property, a fraction for an integer, a raw newline are refused");
    }
    CHECK(accepts(JS, "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}", "{}") &&
          accepts(JS, "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}", "{\"b\": 2}") &&
          !accepts(JS, "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"integer\"}}}", "{, \"b\": 2}"),
          "schema: all-optional objects, commas only between members");
    CHECK(accepts(JS, "{\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, \"minItems\": 2, \"maxItems\": 3}", "[true, false]") &&
          !accepts(JS, "{\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, \"minItems\": 2, \"maxItems\": 3}", "[true]") &&
          !accepts(JS, "{\"type\": \"array\", \"items\": {\"type\": \"boolean\"}, \"minItems\": 2, \"maxItems\": 3}", "[true, true, true, true]"),
          "schema: minItems and maxItems");
    CHECK(accepts(JS, "{\"enum\": [\"a\", 1, null, {\"x\": [true]}]}", "{\"x\": [true]}") &&
          !accepts(JS, "{\"enum\": [\"a\", 1, null]}", "2"), "schema: enum of any values");
    CHECK(accepts(JS, "{\"type\": \"string\", \"pattern\": \"^ab+$\"}", "\"abbb\"") &&
          accepts(JS, "{\"type\": \"string\", \"pattern\": \"b\"}", "\"xbx\"") &&
          !accepts(JS, "{\"type\": \"string\", \"pattern\": \"^ab+$\"}", "\"abx\""),
          "schema: pattern, anchored and searching");
    CHECK(accepts(JS, "{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 2}", "\"\xc3\xa9\\n\"") &&
          !accepts(JS, "{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 2}", "\"abc\""),
          "schema: lengths count characters");
    CHECK(accepts(JS, "true", "[1, {\"a\": null}]") && accepts(JS, "{}", "\"x\""), "schema: true and {} take any value");

    CHECK(compile_error(JS, "{\"type\": \"object\"", "not valid JSON") == PGI_ERR_INVALID_ARGUMENT, "schema: malformed JSON");
    CHECK(compile_error(JS, "{\"$ref\": \"#/definitions/a\"}", "\"$ref\"") == PGI_ERR_UNSUPPORTED, "schema: $ref refused by name");
    CHECK(compile_error(JS, "{\"type\": \"integer\", \"minimum\": 0}", "\"minimum\"") == PGI_ERR_UNSUPPORTED,
          "schema: minimum refused by name");
    CHECK(compile_error(JS, "{\"type\": \"string\", \"format\": \"date\"}", "\"format\"") == PGI_ERR_UNSUPPORTED,
          "schema: format refused by name");
    CHECK(compile_error(JS, "{\"type\": 5}", "\"type\"") == PGI_ERR_INVALID_ARGUMENT, "schema: a type that is not a string");
    CHECK(compile_error(JS, "{\"type\": \"text\"}", "unknown type") == PGI_ERR_INVALID_ARGUMENT, "schema: unknown type");
    CHECK(compile_error(JS, "{\"properties\": {}, \"required\": [\"x\"]}", "\"x\"") == PGI_ERR_UNSUPPORTED,
          "schema: a required property that is not listed");
    CHECK(compile_error(JS, "{\"type\": \"string\", \"pattern\": \"(?=x)\"}", "lookahead") == PGI_ERR_UNSUPPORTED,
          "schema: an unsupported pattern refused by name");
    CHECK(compile_error(JS, "{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", "maxItems") == PGI_ERR_INVALID_ARGUMENT,
          "schema: maxItems < minItems");
    CHECK(compile_error(JS, "false", NULL) == PGI_ERR_INVALID_ARGUMENT, "schema: false matches nothing");
    CHECK(compile_error(JS, "{\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 1000}, \"maxItems\": 1000}, \"maxItems\": 1000}",
                        "too large") == PGI_ERR_FORMAT, "schema: a huge automaton is refused");
}

/* ------------------------------------------------------------ end to end */

typedef struct collected {
    char text[8192];
    size_t n;
} collected;

static bool
collect(void *context, const char *text, size_t length)
{
    collected *c = context;

    if (c->n + length < sizeof(c->text))
    {
        memcpy(c->text + c->n, text, length);
        c->n += length;
    }
    c->text[c->n] = '\0';
    return true;
}

static FILE *out_jsonl;

static void
write_json_string(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
    {
        unsigned char c = (unsigned char) s[i];

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int
generate(pgi_engine *e, const int32_t *prompt, int n_prompt, const pgi_constraint_spec *spec,
         float temperature, uint64_t seed, int max_tokens, collected *out, pgi_finish_reason *reason)
{
    pgi_sampling_params p;
    pgi_generation r;
    pgi_error err;

    pgi_sampling_params_default(&p);
    p.max_tokens = max_tokens;
    p.temperature = temperature;
    p.seed = seed;
    if (spec != NULL)
        p.constraint = *spec;
    out->n = 0;
    out->text[0] = '\0';
    if (pgi_engine_generate(e, prompt, n_prompt, &p, collect, out, &r, &err) != PGI_OK)
    {
        printf("# generate: %s\n", err.message);
        return -1;
    }
    *reason = r.finish_reason;
    pgi_free(r.tokens);
    return r.n_tokens;
}

static double
clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static void
run_model(const char *label, const char *path)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    int32_t prompt[64];
    int n_prompt = 0;
    size_t size;
    char *schemas_text;
    char schemas_path[4096];
    int n_schemas = 0, n_runs = 0, n_json = 0, n_matched = 0, n_stop = 0;
    const char *pgi_dir = getenv("PGI_STRUCTURED_DATA");

    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = "cpu";
    o.n_threads = 1;
    o.max_sequences = 8;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        CHECK(false, "%s: open %s: %s", label, path, err.message);
        return;
    }
    {
        const char *text = "Once upon a time, a little girl";

        pgi_tokenize(pgi_engine_tokenizer(e), text, strlen(text), true, false, prompt, 64, &n_prompt, &err);
    }
    snprintf(schemas_path, sizeof(schemas_path), "%s/structured_schemas.txt",
             pgi_dir != NULL ? pgi_dir : "test/unit/data");
    schemas_text = test_read_file(schemas_path, &size);
    CHECK(schemas_text != NULL, "%s: read %s", label, schemas_path);
    if (schemas_text == NULL)
    {
        pgi_engine_close(e);
        return;
    }
    for (char *line = schemas_text, *next; line != NULL && *line != '\0'; line = next)
    {
        pgi_constraint_spec spec;
        pgi_constraint *check = NULL;
        collected first, again;
        pgi_finish_reason reason;
        bool stable;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (*line == '\0')
            continue;
        n_schemas++;
        spec.kind = PGI_CONSTRAINT_JSON_SCHEMA;
        spec.text = line;
        spec.length = strlen(line);
        if (pgi_constraint_compile(&spec, &check, &err) != PGI_OK)
        {
            CHECK(false, "%s: schema %d compiles: %s", label, n_schemas, err.message);
            continue;
        }
        /* greedy twice (stable), then random seeds */
        generate(e, prompt, n_prompt, &spec, 0.0f, 0, 128, &first, &reason);
        generate(e, prompt, n_prompt, &spec, 0.0f, 0, 128, &again, &reason);
        stable = first.n == again.n && memcmp(first.text, again.text, first.n) == 0;
        CHECK(stable, "%s: schema %d: greedy output is stable: %s", label, n_schemas, first.text);
        for (int run = 0; run < 6; run++)
        {
            collected c;
            int n = generate(e, prompt, n_prompt, &spec, run == 0 ? 0.0f : 1.0f, (uint64_t) run * 7919u,
                             run < 3 ? 128 : 64, &c, &reason);

            n_runs++;
            if (n < 0)
                continue;
            if (is_json(c.text, c.n))
                n_json++;
            else
                printf("# %s: schema %d run %d: not JSON: %s\n", label, n_schemas, run, c.text);
            if (pgi_constraint_matches(check, c.text, c.n))
                n_matched++;
            if (reason != PGI_FINISH_LENGTH)
                n_stop++;
            if (out_jsonl != NULL)
            {
                fprintf(out_jsonl, "{\"model\": \"%s\", \"schema\": %s, \"text\": ", label, line);
                write_json_string(out_jsonl, c.text, c.n);
                fprintf(out_jsonl, "}\n");
            }
        }
        pgi_constraint_free(check);
    }
    CHECK(n_schemas >= 20, "%s: %d schemas", label, n_schemas);
    CHECK(n_json == n_runs, "%s: %d of %d outputs are JSON (greedy, seeds; 128 and 64 tokens)", label, n_json, n_runs);
    CHECK(n_matched == n_runs, "%s: %d of %d outputs in the schema's language", label, n_matched, n_runs);
    printf("# %s: %d of %d ended before max_tokens\n", label, n_stop, n_runs);
    pgi_free(schemas_text);

    /* choices: always a member */
    {
        const char choices[] = "positive\0negative\0neutral\0";
        pgi_constraint_spec spec = {PGI_CONSTRAINT_CHOICES, choices, sizeof(choices) - 1};
        int members = 0;

        for (int seed = 0; seed < 20; seed++)
        {
            collected c;
            pgi_finish_reason reason;

            generate(e, prompt, n_prompt, &spec, seed == 0 ? 0.0f : 1.5f, (uint64_t) seed, 16, &c, &reason);
            if (strcmp(c.text, "positive") == 0 || strcmp(c.text, "negative") == 0 ||
                strcmp(c.text, "neutral") == 0)
                members++;
            else
                printf("# %s: choice \"%s\"\n", label, c.text);
        }
        CHECK(members == 20, "%s: choices: %d of 20 answers are a choice", label, members);
    }

    /* batched: three constrained sequences and one free one step together;
     * each greedy text is the one it gives alone */
    {
        const char *specs[3] = {
            "{\"type\": \"object\", \"properties\": {\"ok\": {\"type\": \"boolean\"}}, \"required\": [\"ok\"]}",
            "{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"maxItems\": 3}",
            "{\"enum\": [\"red\", \"green\", \"blue\"]}"};
        collected alone[3], together[4];
        int64_t ids[4];
        bool done[4] = {false, false, false, false};
        pgi_step_output outputs[16];
        int same = 0;

        for (int k = 0; k < 3; k++)
        {
            pgi_constraint_spec spec = {PGI_CONSTRAINT_JSON_SCHEMA, specs[k], strlen(specs[k])};
            pgi_finish_reason reason;

            generate(e, prompt, n_prompt, &spec, 0.0f, 0, 48, &alone[k], &reason);
        }
        for (int k = 0; k < 4; k++)
        {
            pgi_sampling_params p;

            pgi_sampling_params_default(&p);
            p.max_tokens = 48;
            if (k < 3)
            {
                p.constraint.kind = PGI_CONSTRAINT_JSON_SCHEMA;
                p.constraint.text = specs[k];
                p.constraint.length = strlen(specs[k]);
            }
            together[k].n = 0;
            together[k].text[0] = '\0';
            pgi_engine_add_sequence(e, prompt, n_prompt, &p, &ids[k], &err);
        }
        while (pgi_engine_has_work(e))
        {
            int n = 0;

            if (pgi_engine_step(e, outputs, 16, &n, &err) != PGI_OK)
                break;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < 4; k++)
                    if (outputs[i].seq_id == ids[k] && !done[k])
                    {
                        collect(&together[k], outputs[i].text, outputs[i].text_length);
                        done[k] = outputs[i].finished;
                    }
        }
        for (int k = 0; k < 3; k++)
            if (strcmp(alone[k].text, together[k].text) == 0)
                same++;
            else
                printf("# alone \"%s\" batched \"%s\"\n", alone[k].text, together[k].text);
        CHECK(same == 3, "%s: greedy constrained texts are the same batched with others", label);
    }

    /* overhead: tokens with and without a constraint, greedy and sampled
     * (temperature 1), 3 x 128 tokens each; the engine's constraint_ms is
     * the time spent in constrained_token (token lists, filtering, and the
     * sampling among the allowed tokens, which an unconstrained row pays
     * too), so the difference of the totals is the overhead */
    for (int sampled = 0; sampled < 2; sampled++)
    {
        pgi_engine_stats before, after;
        pgi_constraint_spec specs[2] = {
            {PGI_CONSTRAINT_REGEX, "[\\s\\S]*", 8},
            {PGI_CONSTRAINT_JSON_SCHEMA,
             "{\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"n\": {\"type\": \"integer\"}}, \"required\": [\"name\", \"n\"]}}",
             0}};
        const char *names[3] = {"unconstrained", "regex [\\s\\S]*", "JSON schema"};
        float temperature = sampled ? 1.0f : 0.0f;

        specs[1].length = strlen(specs[1].text);
        for (int k = 0; k < 3; k++)
        {
            collected c;
            pgi_finish_reason reason;
            double t0 = clock_ms(), total;
            int n = 0;

            pgi_engine_get_stats(e, &before);
            for (int r = 0; r < 3; r++)
                n += generate(e, prompt, n_prompt, k == 0 ? NULL : &specs[k - 1], temperature,
                              (uint64_t) r, 128, &c, &reason);
            total = clock_ms() - t0;
            pgi_engine_get_stats(e, &after);
            printf("# overhead %s (vocab %d) %s %s: %.3f ms/token over %d tokens, in constrained_token %.3f ms/token\n",
                   label, pgi_tokenizer_vocab_size(pgi_engine_tokenizer(e)), sampled ? "sampled" : "greedy",
                   names[k], total / (n > 0 ? n : 1), n,
                   (after.constraint_ms - before.constraint_ms) / (n > 0 ? n : 1));
        }
    }
    pgi_engine_close(e);
}

int
main(void)
{
    char path[4096];
    const char *out = getenv("PGI_STRUCTURED_OUT");
    const char *build = getenv("PGI_STRUCTURED_BUILDDIR");
    char synthetic[4096], command[16384];
    struct stat st;

    test_compilers();
    if (out != NULL)
        out_jsonl = fopen(out, "w");
    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    if (stat(path, &st) == 0)
        run_model("stories260K", path);
    else
        printf("# skipped stories260K: %s missing\n", path);

    if (build == NULL)
        build = "build";
    snprintf(synthetic, sizeof(synthetic), "%s/structured/synthetic-llama-bpe.gguf", build);
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-llama-bpe.gguf", unit_models_dir());
    if (stat(synthetic, &st) != 0 && stat(path, &st) == 0)
    {
        snprintf(command, sizeof(command),
                 "mkdir -p %s/structured && %s/make_synthetic_model --type f32 --dim 64 --ffn 128 --layers 2 "
                 "--heads 2 --kv-heads 2 --context 512 --vocab-from %s -o %s > /dev/null",
                 build, build, path, synthetic);
        if (system(command) != 0)
            printf("# could not make %s\n", synthetic);
    }
    if (stat(synthetic, &st) == 0)
        run_model("synthetic-llama-bpe", synthetic);
    else
        printf("# skipped the synthetic model\n");
    if (out_jsonl != NULL)
        fclose(out_jsonl);
    return unit_done();
}
