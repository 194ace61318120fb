/*
 * test_embed.c — embeddings (issue 13): pooling by hand-computed cases,
 * and pgi_engine_embed against llama.cpp's pooled vectors
 * (test/crosscheck/embed_cases.txt and reference/embed-<case>.txt, made by
 * make crosscheck), with the prompt ids our tokenizer gives; then the
 * normalisation (norm 1 within 1e-5), identical texts (cosine 1) and the
 * refusals (an encoder cannot generate, an input longer than the batch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "pgi_memory.h"
#include "pooling.h"
#include "unit.h"

#define MAX_DIM 4096

static const char *
env_or(const char *name, const char *fallback)
{
    const char *d = getenv(name);

    return d != NULL ? d : fallback;
}

/* ------------------------------------------------------------ pooling by hand */

static void
test_pooling_by_hand(void)
{
    /* three rows of two: mean (2, 3), cls (1, 0), last (3, 4) */
    const float rows[] = {1, 0, 2, 5, 3, 4};
    float out[2];
    pgi_pooling p;

    pgi_pool_rows(rows, 3, 2, PGI_POOLING_MEAN, false, out);
    CHECK(out[0] == 2.0f && out[1] == 3.0f, "mean pooling of 3 rows: (2, 3)");
    pgi_pool_rows(rows, 3, 2, PGI_POOLING_CLS, false, out);
    CHECK(out[0] == 1.0f && out[1] == 0.0f, "cls pooling: the first row");
    pgi_pool_rows(rows, 3, 2, PGI_POOLING_LAST, true, out);
    CHECK_NEAR(out[0], 0.6, 1e-7, "last pooling normalised: (3, 4) / 5 -> 0.6 ...");
    CHECK_NEAR(out[1], 0.8, 1e-7, "... and 0.8");
    out[0] = out[1] = 0.0f;
    pgi_l2_normalize(out, 2);
    CHECK(out[0] == 0.0f && out[1] == 0.0f, "a zero vector stays zero");
    CHECK(pgi_pooling_parse("CLS", &p) && p == PGI_POOLING_CLS && !pgi_pooling_parse("max", &p),
          "pooling names parse (cls), others are refused (max)");
}

/* ------------------------------------------------------------ llama.cpp */

typedef struct reference {
    int n_prompts;
    char text[3][256];
    int32_t ids[3][512];
    int n_ids[3];
    int dim;
    float vec[3][MAX_DIM];
} reference;

static bool
read_reference(const char *path, reference *r)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int p = -1, k = 0;

    if (f == NULL)
        return false;
    memset(r, 0, sizeof(*r));
    while (fgets(line, sizeof(line), f) != NULL)
    {
        if (strncmp(line, "prompt ", 7) == 0)
        {
            p = atoi(line + 7);
            if (p < 0 || p >= 3)
                break;
            r->n_prompts = p + 1;
            k = -1;
        }
        else if (p >= 0 && strncmp(line, "text ", 5) == 0)
        {
            line[strcspn(line, "\n")] = '\0';
            snprintf(r->text[p], sizeof(r->text[p]), "%.200s", line + 5);
        }
        else if (p >= 0 && strncmp(line, "prompt_ids", 10) == 0)
        {
            char *s = line + 10, *end;

            for (long v = strtol(s, &end, 10); end != s && r->n_ids[p] < 512; v = strtol(s, &end, 10))
            {
                r->ids[p][r->n_ids[p]++] = (int32_t) v;
                s = end;
            }
        }
        else if (p >= 0 && strncmp(line, "embedding ", 10) == 0)
        {
            r->dim = atoi(line + 10);
            k = 0;
        }
        else if (p >= 0 && k >= 0 && k < r->dim && k < MAX_DIM && line[0] != '#' &&
                 strncmp(line, "pooling", 7) != 0)
            r->vec[p][k++] = strtof(line, NULL);
    }
    fclose(f);
    return r->n_prompts == 3 && r->dim > 0 && r->dim <= MAX_DIM;
}

static pgi_engine *
open_engine(const char *path, pgi_error *err)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;

    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = "cpu";
    o.n_threads = 2;
    if (pgi_engine_open(&o, &e, err) != PGI_OK)
        return NULL;
    return e;
}

static void
run_case(const char *name, const char *pooling_name, char *model, double tolerance)
{
    char path[2048], ref_path[2048], command[8192];
    static reference r;
    pgi_engine *e;
    pgi_error err;
    pgi_pooling pooling;
    const char *shared = unit_models_dir();

    snprintf(ref_path, sizeof(ref_path), "%s/reference/embed-%s.txt",
             env_or("PGI_CROSSCHECK_DATA", "test/crosscheck"), name);
    if (!CHECK(read_reference(ref_path, &r), "embed %s: reference %s reads", name, ref_path))
        return;
    if (strncmp(model, "file:", 5) == 0)
        snprintf(path, sizeof(path), "%s%s", shared,
                 strstr(model, "$SHARED_MODELS") ? strstr(model, "$SHARED_MODELS") + 14 : model + 5);
    else
    {
        char args[2048] = "";
        const char *src = model;
        const char *mark;

        /* $SHARED_MODELS in the arguments */
        while ((mark = strstr(src, "$SHARED_MODELS")) != NULL)
        {
            strncat(args, src, (size_t) (mark - src));
            strncat(args, shared, sizeof(args) - strlen(args) - 1);
            src = mark + 14;
        }
        strncat(args, src, sizeof(args) - strlen(args) - 1);
        snprintf(path, sizeof(path), "%s/test/embed-%s.gguf",
                 env_or("PGI_CROSSCHECK_BUILDDIR", "build"), name);
        snprintf(command, sizeof(command), "mkdir -p %s/test && %s/make_synthetic_model %s -o %s > /dev/null",
                 env_or("PGI_CROSSCHECK_BUILDDIR", "build"), env_or("PGI_CROSSCHECK_BUILDDIR", "build"),
                 args, path);
        if (!CHECK(system(command) == 0, "embed %s: make_synthetic_model writes the model", name))
            return;
    }
    e = open_engine(path, &err);
    if (!CHECK(e != NULL, "embed %s: the engine opens %s (%s)", name, path, e ? "" : err.message))
        return;
    CHECK(pgi_pooling_parse(pooling_name, &pooling), "embed %s: pooling %s", name, pooling_name);
    CHECK(pgi_engine_embedding_length(e) == r.dim, "embed %s: %d dimensions as llama.cpp", name,
          r.dim);
    for (int p = 0; p < 3; p++)
    {
        int32_t *ids = NULL;
        int n = 0;
        static float ours[MAX_DIM], normed[2 * MAX_DIM];
        pgi_embed_input in[2];
        double worst = 0.0, norm = 0.0, dot = 0.0;
        const pgi_tokenizer *tok = pgi_engine_tokenizer(e);

        if (pgi_tokenize_alloc(tok, r.text[p], strlen(r.text[p]), pgi_tokenizer_adds_bos(tok), false,
                               &ids, &n, &err) != PGI_OK)
        {
            CHECK(false, "embed %s prompt %d: tokenizes (%s)", name, p, err.message);
            continue;
        }
        CHECK(n == r.n_ids[p] && memcmp(ids, r.ids[p], sizeof(int32_t) * (size_t) n) == 0,
              "embed %s prompt %d: our %d prompt ids are llama.cpp's %d", name, p, n, r.n_ids[p]);
        in[0].tokens = ids;
        in[0].n_tokens = n;
        in[1] = in[0];
        if (!CHECK(pgi_engine_embed(e, in, 1, pooling, false, ours, &err) == PGI_OK,
                   "embed %s prompt %d: embeds (%s)", name, p, err.message))
        {
            pgi_free(ids);
            continue;
        }
        for (int i = 0; i < r.dim; i++)
            if (fabs((double) ours[i] - r.vec[p][i]) > worst)
                worst = fabs((double) ours[i] - r.vec[p][i]);
        printf("# embed %s prompt %d: max |ours - llama.cpp| %.3g\n", name, p, worst);
        CHECK(worst <= tolerance, "embed %s prompt %d: within %g of llama.cpp (%.3g)", name, p,
              tolerance, worst);
        /* two identical inputs in one pass, normalised */
        CHECK(pgi_engine_embed(e, in, 2, pooling, true, normed, &err) == PGI_OK,
              "embed %s prompt %d: a batch of two embeds", name, p);
        for (int i = 0; i < r.dim; i++)
        {
            norm += (double) normed[i] * normed[i];
            dot += (double) normed[i] * normed[r.dim + i];
        }
        CHECK_NEAR(sqrt(norm), 1.0, 1e-5, "embed %s prompt %d: normalised, norm %.8f", name, p,
                   sqrt(norm));
        CHECK_NEAR(dot, 1.0, 1e-5, "embed %s prompt %d: identical texts have cosine 1 (%.8f)",
                   name, p, dot);
        pgi_free(ids);
    }
    if (pgi_engine_config(e)->encoder)
    {
        int32_t one = 101;
        pgi_sampling_params params;
        int64_t id;

        pgi_sampling_params_default(&params);
        CHECK(pgi_engine_add_sequence(e, &one, 1, &params, &id, &err) == PGI_ERR_UNSUPPORTED,
              "embed %s: an encoder refuses to generate (%s)", name, err.message);
    }
    {
        int limit = pgi_engine_max_embed_tokens(e);
        int32_t *many = pgi_calloc((size_t) limit + 1, sizeof(int32_t));
        pgi_embed_input in = {many, limit + 1};
        static float out[MAX_DIM];

        for (int i = 0; i <= limit; i++)
            many[i] = 5;
        CHECK(pgi_engine_embed(e, &in, 1, pooling, true, out, &err) == PGI_ERR_CONTEXT_FULL,
              "embed %s: %d tokens are refused (%s)", name, limit + 1, err.message);
        pgi_free(many);
    }
    pgi_engine_close(e);
}

int
main(void)
{
    char path[2048], line[4096];
    FILE *f;
    double tolerance[16];
    char tolerance_name[16][64];
    int n_tolerance = 0;

    test_pooling_by_hand();
    snprintf(path, sizeof(path), "%s/embed_cases.txt", env_or("PGI_CROSSCHECK_DATA", "test/crosscheck"));
    f = fopen(path, "r");
    if (!CHECK(f != NULL, "%s opens", path))
        return unit_done();
    while (fgets(line, sizeof(line), f) != NULL)
    {
        char kind[32], name[64], second[64];
        int used = 0;

        line[strcspn(line, "\n#")] = '\0';
        if (sscanf(line, "%31s %63s %63s %n", kind, name, second, &used) < 3)
            continue;
        if (strcmp(kind, "tolerance") == 0 && n_tolerance < 16)
        {
            snprintf(tolerance_name[n_tolerance], sizeof(tolerance_name[0]), "%s", name);
            tolerance[n_tolerance++] = strtod(second, NULL);
        }
        else if (strcmp(kind, "embed") == 0)
        {
            double bound = -1.0;

            for (int i = 0; i < n_tolerance; i++)
                if (strcmp(tolerance_name[i], name) == 0)
                    bound = tolerance[i];
            if (CHECK(bound > 0, "embed %s has a tolerance", name))
                run_case(name, second, line + used, bound);
        }
    }
    fclose(f);
    return unit_done();
}
