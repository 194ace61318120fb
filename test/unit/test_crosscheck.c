/*
 * test_crosscheck.c — the engine against llama.cpp, case by case.
 *
 * test/crosscheck/cases.txt lists the cases (make_synthetic_model arguments)
 * and the logit tolerance of each tensor type; test/crosscheck/reference/
 * holds what llama.cpp (the prebuilt library of node-llama-cpp 3.21.1)
 * computed on each case's model for three prompts: the prompt ids (from
 * its tokenizer, for text prompts), 64 greedy tokens, each step's top-2
 * logits and the first step's logits.  make crosscheck writes those files
 * (test/crosscheck/README.md); this test needs neither llama.cpp nor a
 * network.
 *
 * For each case: the model is made anew by make_synthetic_model (the same
 * bytes llama.cpp read: the file's size is checked), and for each prompt
 *   - text prompts: our tokenizer gives llama.cpp's ids
 *   - the first step's logits are within the type's tolerance of llama.cpp's
 *   - our 64 greedy tokens equal llama.cpp's.  When llama.cpp's own top-2
 *     gap at some step is below the tolerance, the two engines may pick
 *     differently there without either being wrong: the tokens must then
 *     agree up to that step, and the output says where the comparison
 *     stopped and why.
 *
 *   test_crosscheck            every case whose model make_synthetic_model
 *                              writes alone (make test)
 *   test_crosscheck NAME...    just those cases, llama.cpp-quantized ones
 *                              included (their models must already be in
 *                              $BUILDDIR/crosscheck/models: make crosscheck);
 *                              a model our engine refuses as unsupported is
 *                              reported as a TAP skip
 *
 * Environment: PGI_CROSSCHECK_DATA (default test/crosscheck),
 * PGI_CROSSCHECK_BUILDDIR (default build; the Makefile sets both),
 * PGI_SHARED_MODELS (unit.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "pgi_memory.h"
#include "test_support.h"
#include "unit.h"

#define MAX_CASES 128
#define MAX_TOLERANCES 64
#define MAX_ARGS 64
#define MAX_PROMPTS 3
#define MAX_IDS 512
#define MAX_STEPS 256

typedef struct tolerance {
    char type[32];
    double bound;
} tolerance;

typedef struct xcase {
    char name[64];
    char prompts[8];               /* "ids" or "text" */
    char quantize[32];             /* "-" or a llama.cpp file type */
    char *args[MAX_ARGS];          /* make_synthetic_model's arguments */
    int n_args;
} xcase;

typedef struct ref_prompt {
    char *text;                    /* text prompts only */
    int32_t prompt_ids[MAX_IDS];
    int n_prompt;
    int32_t generated[MAX_STEPS];
    int n_generated;
    double top_gap[MAX_STEPS];     /* llama.cpp's top-1 minus top-2 logit, per step */
    int n_top;
    int32_t *logit_ids;            /* the first step's logits: ids (ascending) and values */
    double *logits;
    int n_logits;
    int vocab;
} ref_prompt;

typedef struct reference {
    long long model_bytes;
    int steps;
    ref_prompt prompts[MAX_PROMPTS];
    int n_prompts;
} reference;

static tolerance tolerances[MAX_TOLERANCES];
static int n_tolerances;
static xcase cases[MAX_CASES];
static int n_cases;

static const char *
data_dir(void)
{
    const char *d = getenv("PGI_CROSSCHECK_DATA");

    return d != NULL ? d : "test/crosscheck";
}

static const char *
build_dir(void)
{
    const char *d = getenv("PGI_CROSSCHECK_BUILDDIR");

    return d != NULL ? d : "build";
}

/* ------------------------------------------------------------ cases.txt */

/* The blank-separated words of line (changed in place), up to '#'. */
static int
split_words(char *line, char **words, int max)
{
    int n = 0;
    char *hash = strchr(line, '#');

    if (hash != NULL)
        *hash = '\0';
    for (char *w = strtok(line, " \t\r\n"); w != NULL && n < max; w = strtok(NULL, " \t\r\n"))
        words[n++] = w;
    return n;
}

static bool
load_cases(void)
{
    char path[4096];
    size_t size;
    char *contents, *line, *next;
    bool ok = true;

    snprintf(path, sizeof(path), "%s/cases.txt", data_dir());
    contents = test_read_file(path, &size);
    if (contents == NULL)
    {
        printf("# cannot read %s\n", path);
        return false;
    }
    for (line = contents; line != NULL && ok; line = next)
    {
        char *words[MAX_ARGS + 8];
        int n;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        n = split_words(line, words, MAX_ARGS + 8);
        if (n == 0)
            continue;
        if (strcmp(words[0], "tolerance") == 0 && n == 3 && n_tolerances < MAX_TOLERANCES)
        {
            tolerance *t = &tolerances[n_tolerances++];

            snprintf(t->type, sizeof(t->type), "%s", words[1]);
            t->bound = strtod(words[2], NULL);
            ok = t->bound > 0.0;
        }
        else if (strcmp(words[0], "case") == 0 && n >= 5 && n - 4 <= MAX_ARGS && n_cases < MAX_CASES)
        {
            xcase *c = &cases[n_cases++];

            snprintf(c->name, sizeof(c->name), "%s", words[1]);
            snprintf(c->prompts, sizeof(c->prompts), "%s", words[2]);
            snprintf(c->quantize, sizeof(c->quantize), "%s", words[3]);
            for (int i = 4; i < n; i++)
            {
                const char *w = words[i];
                const char *marker = "$SHARED_MODELS";

                /* $SHARED_MODELS stands for ../shared/models */
                if (strncmp(w, marker, strlen(marker)) == 0)
                {
                    size_t len = strlen(unit_models_dir()) + strlen(w) + 1;

                    c->args[c->n_args] = pgi_alloc(len);
                    if (c->args[c->n_args] != NULL)
                        snprintf(c->args[c->n_args], len, "%s%s", unit_models_dir(), w + strlen(marker));
                }
                else
                    c->args[c->n_args] = pgi_strdup(w);
                if (c->args[c->n_args] == NULL)
                    ok = false;
                c->n_args++;
            }
            ok = ok && (strcmp(c->prompts, "ids") == 0 || strcmp(c->prompts, "text") == 0);
        }
        else
        {
            printf("# %s: cannot read the line starting \"%s\"\n", path, words[0]);
            ok = false;
        }
    }
    pgi_free(contents);
    return ok && n_cases > 0;
}

/* The value of --type among a case's arguments (make_synthetic_model's
 * default f16), or the quantize type when llama.cpp quantizes the model. */
static const char *
case_type(const xcase *c)
{
    if (strcmp(c->quantize, "-") != 0)
        return c->quantize;
    for (int i = 0; i + 1 < c->n_args; i++)
        if (strcmp(c->args[i], "--type") == 0)
            return c->args[i + 1];
    return "f16";
}

static const tolerance *
find_tolerance(const char *type)
{
    for (int i = 0; i < n_tolerances; i++)
        if (strcmp(tolerances[i].type, type) == 0)
            return &tolerances[i];
    return NULL;
}

/* ------------------------------------------------------------ the reference file */

static int
parse_ids(const char *p, int32_t *ids, int max)
{
    int n = 0;

    while (n < max)
    {
        char *end;
        long v = strtol(p, &end, 10);

        if (end == p)
            break;
        ids[n++] = (int32_t) v;
        p = end;
    }
    return n;
}

static void
free_reference(reference *r)
{
    for (int i = 0; i < MAX_PROMPTS; i++)
    {
        pgi_free(r->prompts[i].text);
        pgi_free(r->prompts[i].logit_ids);
        pgi_free(r->prompts[i].logits);
    }
    memset(r, 0, sizeof(*r));
}

static bool
load_reference(const char *name, reference *r)
{
    char path[4096];
    size_t size;
    char *contents, *line, *next;
    ref_prompt *p = NULL;
    int logits_left = 0;
    bool ok = true;

    memset(r, 0, sizeof(*r));
    snprintf(path, sizeof(path), "%s/reference/%s.txt", data_dir(), name);
    contents = test_read_file(path, &size);
    if (contents == NULL)
    {
        printf("# cannot read %s (make crosscheck writes it)\n", path);
        return false;
    }
    for (line = contents; line != NULL && ok; line = next)
    {
        int a, b;
        double x, y;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (logits_left > 0)
        {
            int id;
            double v;

            if (sscanf(line, "%d %lf", &id, &v) != 2)
                ok = false;
            else
            {
                p->logit_ids[p->n_logits] = id;
                p->logits[p->n_logits++] = v;
            }
            logits_left--;
            continue;
        }
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (sscanf(line, "model_bytes %lld", &r->model_bytes) == 1 || sscanf(line, "steps %d", &r->steps) == 1)
            continue;
        if (sscanf(line, "prompt %d", &a) == 1)
        {
            if (a != r->n_prompts || a >= MAX_PROMPTS)
                ok = false;
            else
                p = &r->prompts[r->n_prompts++];
            continue;
        }
        if (p == NULL)
            ok = false;
        else if (strncmp(line, "text ", 5) == 0)
            ok = (p->text = pgi_strdup(line + 5)) != NULL;
        else if (strncmp(line, "prompt_ids ", 11) == 0)
            p->n_prompt = parse_ids(line + 11, p->prompt_ids, MAX_IDS);
        else if (strncmp(line, "generated ", 10) == 0)
            p->n_generated = parse_ids(line + 10, p->generated, MAX_STEPS);
        else if (sscanf(line, "top2 %d %lf %d %lf", &a, &x, &b, &y) == 4 && p->n_top < MAX_STEPS)
            p->top_gap[p->n_top++] = x - y;
        else if (sscanf(line, "logits %d %d", &a, &b) == 2 && a > 0 && a <= b)
        {
            p->vocab = b;
            p->logit_ids = pgi_calloc((size_t) a, sizeof(int32_t));
            p->logits = pgi_calloc((size_t) a, sizeof(double));
            logits_left = a;
            ok = p->logit_ids != NULL && p->logits != NULL;
        }
        else
            ok = false;
        if (!ok)
            printf("# %s: cannot read \"%.60s\"\n", path, line);
    }
    pgi_free(contents);
    ok = ok && logits_left == 0 && r->n_prompts == MAX_PROMPTS && r->steps > 0 && r->steps <= MAX_STEPS;
    for (int i = 0; ok && i < r->n_prompts; i++)
        ok = r->prompts[i].n_prompt > 0 && r->prompts[i].n_generated == r->steps &&
             r->prompts[i].n_top == r->steps && r->prompts[i].n_logits > 0;
    return ok;
}

/* ------------------------------------------------------------ the model */

static void
model_path(const xcase *c, char *path, size_t size)
{
    snprintf(path, size, "%s/crosscheck/models/%s.gguf", build_dir(), c->name);
}

/* make_synthetic_model ARGS -o PATH, its stdout dropped. */
static bool
make_model(const xcase *c, const char *path)
{
    char tool[4096], dir[4096];
    char *argv[MAX_ARGS + 4];
    int n = 0, status;
    pid_t pid;

    snprintf(dir, sizeof(dir), "%s/crosscheck", build_dir());
    mkdir(dir, 0777);
    snprintf(dir, sizeof(dir), "%s/crosscheck/models", build_dir());
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return false;
    snprintf(tool, sizeof(tool), "%s/make_synthetic_model", build_dir());
    argv[n++] = tool;
    for (int i = 0; i < c->n_args; i++)
        argv[n++] = c->args[i];
    argv[n++] = "-o";
    argv[n++] = (char *) path;
    argv[n] = NULL;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0)
    {
        int null = open("/dev/null", O_WRONLY);

        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execv(tool, argv);
        fprintf(stderr, "test_crosscheck: cannot run %s: %s\n", tool, strerror(errno));
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ------------------------------------------------------------ our side */

/* The first logits row the engine reports for the current sequence. */
typedef struct first_logits {
    float *row;
    int vocab;
    int position;                  /* the prompt's last position */
} first_logits;

static void
observe(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    first_logits *f = context;

    (void) seq_id;
    if (f->row != NULL || position != f->position)
        return;
    f->row = malloc(sizeof(float) * (size_t) vocab);
    if (f->row != NULL)
    {
        memcpy(f->row, logits, sizeof(float) * (size_t) vocab);
        f->vocab = vocab;
    }
}

static double
seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double) (t1.tv_sec - t0->tv_sec) + (double) (t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void
check_prompt(pgi_engine *engine, first_logits *seen, const xcase *c, const ref_prompt *p, int index,
             int steps, double tol, double *worst_error)
{
    pgi_sampling_params params;
    pgi_generation result;
    pgi_error err;
    int mismatch = -1, near_tie = -1;
    double worst = 0.0;

    if (p->text != NULL)
    {
        int32_t *ids = NULL;
        int n_ids = 0;
        pgi_status st = pgi_tokenize_alloc(pgi_engine_tokenizer(engine), p->text, strlen(p->text), true,
                                           false, &ids, &n_ids, &err);

        CHECK(st == PGI_OK && n_ids == p->n_prompt &&
                  memcmp(ids, p->prompt_ids, sizeof(int32_t) * (size_t) n_ids) == 0,
              "%s prompt %d: our tokenizer gives llama.cpp's %d ids for \"%s\" (%d ids)", c->name, index,
              p->n_prompt, p->text, n_ids);
        pgi_free(ids);
    }

    pgi_sampling_params_default(&params);
    params.max_tokens = steps;
    params.ignore_eos = true;      /* llama.cpp's run went on past any end token */
    seen->row = NULL;
    seen->position = p->n_prompt - 1;
    if (pgi_engine_generate(engine, p->prompt_ids, p->n_prompt, &params, NULL, NULL, &result, &err) != PGI_OK)
    {
        CHECK(false, "%s prompt %d: generate: %s", c->name, index, err.message);
        return;
    }

    /* the first step's logits */
    if (seen->row == NULL || seen->vocab != p->vocab)
        CHECK(false, "%s prompt %d: first-step logits observed, vocabulary of %d (%d)", c->name, index,
              p->vocab, seen->row != NULL ? seen->vocab : 0);
    else
    {
        int worst_id = -1;

        for (int i = 0; i < p->n_logits; i++)
        {
            double d = fabs((double) seen->row[p->logit_ids[i]] - p->logits[i]);

            if (!(d <= worst))     /* NaN counts as the worst */
            {
                worst = d;
                worst_id = p->logit_ids[i];
            }
        }
        CHECK(worst <= tol, "%s prompt %d: %d first-step logits within %g of llama.cpp's (max |diff| %.2e at id %d)",
              c->name, index, p->n_logits, tol, worst, worst_id);
        if (worst > *worst_error || isnan(worst))
            *worst_error = worst;
    }
    free(seen->row);
    seen->row = NULL;

    /* the greedy tokens */
    for (int i = 0; i < steps; i++)
        if (i >= result.n_tokens || result.tokens[i] != p->generated[i])
        {
            mismatch = i;
            break;
        }
    for (int i = 0; i < steps; i++)
        if (p->top_gap[i] < tol)
        {
            near_tie = i;
            break;
        }
    if (mismatch < 0)
        CHECK(true, "%s prompt %d: our %d greedy tokens equal llama.cpp's", c->name, index, steps);
    else if (near_tie >= 0 && mismatch >= near_tie)
        CHECK(true,
              "%s prompt %d: greedy tokens equal llama.cpp's for steps 0..%d; compared only up to step %d, "
              "where llama.cpp's own top-2 gap (%.2e) is below the tolerance %g (a near-tie either "
              "engine may break either way)",
              c->name, index, mismatch - 1, near_tie, p->top_gap[near_tie], tol);
    else
        CHECK(false, "%s prompt %d: greedy tokens equal llama.cpp's (first difference at step %d: ours %d, "
              "llama.cpp's %d; its top-2 gap there %.2e)",
              c->name, index, mismatch, mismatch < result.n_tokens ? result.tokens[mismatch] : -1,
              p->generated[mismatch], p->top_gap[mismatch]);
    pgi_free(result.tokens);
}

/*
 * PGI_TEST_DEVICE (and PGI_TEST_CUDA_LIBRARY) run the cases on another
 * backend, as test_engine does: make test-gpu-emu runs them on the CUDA
 * emulator.  A device computes in its own way (F16 KV cache, activations
 * rounded to int8 per 32 rather than per 256), so its bound is the larger
 * of the case's and the device's own line in cases.txt ("tolerance
 * cuda-float" / "tolerance cuda-quantized").
 */
static const char *
test_device(void)
{
    const char *d = getenv("PGI_TEST_DEVICE");

    return d != NULL && d[0] != '\0' ? d : "cpu";
}

static bool
float_type(const char *type)
{
    return strcmp(type, "f32") == 0 || strcmp(type, "f16") == 0 || strcmp(type, "bf16") == 0;
}

static void
run_case(const xcase *c, bool explicit_case)
{
    static reference ref;
    char path[4096];
    const char *type = case_type(c);
    /* a line naming the case itself takes precedence over its type's */
    const tolerance *tol = find_tolerance(c->name) != NULL ? find_tolerance(c->name)
                                                            : find_tolerance(type);
    double bound;
    pgi_engine_options options;
    pgi_engine *engine = NULL;
    pgi_error err;
    pgi_status st;
    first_logits seen = {NULL, 0, 0};
    struct stat sb;
    struct timespec t0;
    double worst = 0.0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("# case %s (%s)\n", c->name, type);
    if (!CHECK(tol != NULL, "%s: cases.txt has a tolerance line for type %s", c->name, type))
        return;
    bound = tol->bound;
    if (!CHECK(load_reference(c->name, &ref), "%s: read reference/%s.txt", c->name, c->name))
    {
        free_reference(&ref);
        return;
    }
    model_path(c, path, sizeof(path));
    if (strcmp(c->quantize, "-") == 0)
        CHECK(make_model(c, path), "%s: make_synthetic_model writes %s", c->name, path);
    CHECK(stat(path, &sb) == 0 && (long long) sb.st_size == ref.model_bytes,
          "%s: the model is the file llama.cpp read (%lld bytes; %lld here)%s", c->name, ref.model_bytes,
          stat(path, &sb) == 0 ? (long long) sb.st_size : -1LL,
          strcmp(c->quantize, "-") == 0 ? "" : " (made by make crosscheck)");

    pgi_engine_options_default(&options);
    options.model_path = path;
    options.device = test_device();
    options.cuda_library_path = getenv("PGI_TEST_CUDA_LIBRARY");
    options.n_threads = 2;
    options.max_sequences = 1;
    options.logits_observer = observe;
    options.logits_observer_context = &seen;
    st = pgi_engine_open(&options, &engine, &err);
    if (st != PGI_OK)
    {
        if (st == PGI_ERR_UNSUPPORTED && explicit_case)
            CHECK(true, "# SKIP %s: our engine refuses the model: %s", c->name, err.message);
        else
            CHECK(false, "%s: our engine opens %s: %s", c->name, path, err.message);
        free_reference(&ref);
        return;
    }
    if (strcmp(test_device(), "cpu") != 0)
    {
        const tolerance *dev = find_tolerance(float_type(type) ? "cuda-float" : "cuda-quantized");

        if (!CHECK(dev != NULL, "%s: cases.txt has the device's tolerance lines", c->name))
        {
            pgi_engine_close(engine);
            free_reference(&ref);
            return;
        }
        if (dev->bound > bound)
            bound = dev->bound;
    }
    for (int i = 0; i < ref.n_prompts; i++)
        check_prompt(engine, &seen, c, &ref.prompts[i], i, ref.steps, bound, &worst);
    pgi_engine_close(engine);
    printf("# case %s on %s: max |logit diff| %.2e (tolerance %g for %s), %.1f s\n", c->name,
           test_device(), worst, bound,
           type, seconds_since(&t0));
    free_reference(&ref);
}

int
main(int argc, char **argv)
{
    int ran = 0;

    if (!CHECK(load_cases(), "read %s/cases.txt (%d cases, %d tolerances)", data_dir(), n_cases, n_tolerances))
        return unit_done();
    for (int a = 1; a < argc; a++)
    {
        bool known = false;

        for (int i = 0; i < n_cases; i++)
            known |= strcmp(cases[i].name, argv[a]) == 0;
        CHECK(known, "case %s is in cases.txt", argv[a]);
    }
    for (int i = 0; i < n_cases; i++)
    {
        bool wanted = argc == 1 ? strcmp(cases[i].quantize, "-") == 0 : false;

        for (int a = 1; a < argc; a++)
            wanted |= strcmp(cases[i].name, argv[a]) == 0;
        if (argc == 1 && !wanted)
            printf("# case %s: its model is quantized by llama.cpp; make crosscheck compares it\n",
                   cases[i].name);
        if (!wanted)
            continue;
        run_case(&cases[i], argc > 1);
        ran++;
    }
    CHECK(ran > 0, "%d cases compared", ran);
    for (int i = 0; i < n_cases; i++)
        for (int j = 0; j < cases[i].n_args; j++)
            pgi_free(cases[i].args[j]);
    return unit_done();
}
