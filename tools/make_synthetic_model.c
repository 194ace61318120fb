/*
 * make_synthetic_model — writes a llama-family GGUF of any shape with random
 * weights, for tests and benchmarks at real sizes.
 *
 *   make_synthetic_model --type q4_k_m --vocab-from ../shared/models/vocab/ggml-vocab-llama-spm.gguf -o m.gguf
 *
 * The defaults are the "134M" benchmark shape: dim 768, ffn 2048, 12 layers,
 * 12 heads, 12 kv heads.  Weights are normal(0, 0.02); norm weights are
 * 1 + normal(0, 0.02).  Each tensor's values depend only on the seed and the
 * tensor's name, so files of different types made with one seed hold the
 * same model at different precisions.  Rows are generated, converted and
 * streamed to the file one at a time, so memory stays at a few rows.
 *
 * The quantized types follow llama.cpp's recipes for their file types
 * (llama_tensor_get_type_impl in llama-quant.cpp, for a dense llama/qwen2
 * model without an importance matrix).  use_more_bits(i, n) holds in the
 * first and last eighth of the layers and every third layer between;
 * n_gqa is heads / kv-heads.
 *   q4_k_m   Q4_K; Q6_K for attn_v and ffn_down where use_more_bits.
 *   q5_k_m   Q5_K; Q6_K for attn_v and ffn_down where use_more_bits.
 *   q3_k_m   Q3_K; attn_v Q5_K in layers 0-1, else Q4_K; ffn_down Q5_K in
 *            the first sixteenth of the layers, else Q4_K; attn_output Q4_K.
 *   q2_k     Q2_K; attn_v Q4_K if n_gqa >= 4, else Q3_K; attn_output and
 *            ffn_down Q3_K.
 *   iq4_nl, iq4_xs   that type; attn_v Q5_K if n_gqa >= 4; ffn_down Q5_K in
 *            the first eighth of the layers.
 *   q4_1, q5_0, q5_1   that type everywhere.
 * and for all of them output.weight (token_embd.weight when tied) is Q6_K.
 *   mxfp4    llama.cpp's MXFP4_MOE puts MXFP4 only on the 3-D expert
 *            tensors and Q8_0 on everything else; a dense model has no
 *            expert tensors, so here every matrix but the output is MXFP4
 *            (the output Q8_0, as there), to give a model in that type.
 *   q4_0, q8_0, f16, bf16, f32   that type everywhere.
 * Norms and biases are F32.  A row length that is not a whole number of
 * blocks falls back as llama.cpp's tensor_type_fallback does: Q2_K, Q3_K
 * -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; IQ4_XS -> IQ4_NL; and
 * a 32-element type that still does not fit -> F16.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "pgi_memory.h"
#include "sampler.h"
#include "tensor_types.h"

typedef struct options {
    const char *type_name;
    int64_t dim, ffn, layers, heads, kv_heads, context;
    int64_t vocab_size;            /* when no --vocab-from */
    const char *vocab_from;
    bool tied;
    const char *arch;
    int64_t head_dim;              /* 0: dim / heads */
    int64_t sliding_window;        /* gemma3, gpt-oss: tokens a local layer sees (0: none) */
    int64_t experts, experts_used, expert_ffn;   /* qwen3moe, gpt-oss */
    const char *expert_type_name;  /* NULL: the --type's matrix type */
    uint32_t expert_type;          /* resolved from expert_type_name (UINT32_MAX: none) */
    int64_t yarn_factor, yarn_original;   /* YaRN RoPE scaling (0: none) */
    int64_t longrope_original;     /* LongRoPE factors from this original context (0: none) */
    int64_t pooling;               /* encoders: <arch>.pooling_type (1 mean, 2 cls, 3 last) */
    uint64_t seed;
    float rope_base, rms_eps;
    const char *output;
} options;

/* Which of llama.cpp's per-tensor rules a --type follows (see above). */
typedef enum recipe {
    RECIPE_UNIFORM,              /* the base type everywhere */
    RECIPE_Q6_K_OUTPUT,          /* ... but output.weight Q6_K */
    RECIPE_Q4_K_M,
    RECIPE_Q5_K_M,
    RECIPE_Q3_K_M,
    RECIPE_Q2_K,
    RECIPE_IQ4,
    RECIPE_MXFP4
} recipe;

/* The base tensor type, file_type id and recipe of each --type. */
typedef struct type_choice {
    const char *name;
    uint32_t matrix_type;
    uint32_t file_type;          /* llama_ftype numbering (llama.h) */
    recipe rules;
} type_choice;

static const type_choice type_choices[] = {
    {"f32", PGI_TYPE_F32, 0, RECIPE_UNIFORM},
    {"f16", PGI_TYPE_F16, 1, RECIPE_UNIFORM},
    {"bf16", PGI_TYPE_BF16, 32, RECIPE_UNIFORM},
    {"q8_0", PGI_TYPE_Q8_0, 7, RECIPE_UNIFORM},
    {"q4_0", PGI_TYPE_Q4_0, 2, RECIPE_UNIFORM},
    {"q4_1", PGI_TYPE_Q4_1, 3, RECIPE_Q6_K_OUTPUT},
    {"q5_0", PGI_TYPE_Q5_0, 8, RECIPE_Q6_K_OUTPUT},
    {"q5_1", PGI_TYPE_Q5_1, 9, RECIPE_Q6_K_OUTPUT},
    {"q2_k", PGI_TYPE_Q2_K, 10, RECIPE_Q2_K},
    {"q3_k_m", PGI_TYPE_Q3_K, 12, RECIPE_Q3_K_M},
    {"q4_k_m", PGI_TYPE_Q4_K, 15, RECIPE_Q4_K_M},
    {"q5_k_m", PGI_TYPE_Q5_K, 17, RECIPE_Q5_K_M},
    {"iq4_nl", PGI_TYPE_IQ4_NL, 25, RECIPE_IQ4},
    {"iq4_xs", PGI_TYPE_IQ4_XS, 30, RECIPE_IQ4},
    {"mxfp4", PGI_TYPE_MXFP4, 38, RECIPE_MXFP4},
};

/* ------------------------------------------------------------ random */

typedef struct rng {
    uint64_t state;
    bool has_spare;
    float spare;
} rng;

/* Uniform in (0, 1]. */
static double
uniform(rng *r)
{
    return ((double) (pgi_splitmix64(&r->state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static float
normal(rng *r)
{
    double radius, angle;

    if (r->has_spare)
    {
        r->has_spare = false;
        return r->spare;
    }
    radius = sqrt(-2.0 * log(uniform(r)));
    angle = 2.0 * M_PI * uniform(r);
    r->spare = (float) (radius * sin(angle));
    r->has_spare = true;
    return (float) (radius * cos(angle));
}

static uint64_t
name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (uint8_t) *s) * 1099511628211ull;
    return h;
}

/* ------------------------------------------------------------ families */

/* The tensors and keys a family's files carry beyond llama's (llama.cpp's
 * converter writes them so). */
typedef struct family {
    const char *arch;
    bool qkv_bias;               /* qwen2, gpt-oss */
    bool qk_norm;                /* attn_q_norm / attn_k_norm [head_dim] */
    bool post_norms;             /* post_attention_norm / post_ffw_norm */
    bool fused;                  /* attn_qkv and ffn_up = gate|up (phi3) */
    bool writes_head_dim;        /* attention.key_length / value_length */
    bool experts;                /* ffn_gate_inp and *_exps instead of the FFN */
    bool oai;                    /* gpt-oss: sinks, output and expert biases, its FFN norm name */
    bool encoder;                /* bert, nomic-bert: see make_encoder_plan */
} family;

static const family families[] = {
    {"llama", false, false, false, false, false, false, false, false},
    {"qwen2", true, false, false, false, false, false, false, false},
    {"qwen3", false, true, false, false, true, false, false, false},
    {"gemma3", false, true, true, false, true, false, false, false},
    {"phi3", false, false, false, true, false, false, false, false},
    {"qwen3moe", false, true, false, false, true, true, false, false},
    {"gpt-oss", true, false, false, false, true, true, true, false},
    {"bert", true, false, false, false, false, false, false, true},
    {"nomic-bert", false, false, false, true, false, false, false, true},
};

static const family *
family_of(const char *arch)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (strcmp(families[i].arch, arch) == 0)
            return &families[i];
    return NULL;
}

/* ------------------------------------------------------------ the plan */

/* KIND_ROPE_FACTORS: LongRoPE's per-frequency divisors, 1 + scale * i
 * (the tensor's dims[1] carries the scale in hundredths) */
typedef enum tensor_kind { KIND_MATRIX, KIND_NORM, KIND_BIAS, KIND_ROPE_FACTORS } tensor_kind;

typedef struct planned_tensor {
    char name[64];
    int64_t dims[3];
    uint32_t n_dims;
    uint32_t type;
    uint32_t wanted;             /* the recipe's type before any fallback */
    int factor_step;             /* KIND_ROPE_FACTORS: hundredths added per frequency */
    tensor_kind kind;
} planned_tensor;

static bool
use_more_bits(int64_t layer, int64_t n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* The matrices the recipes tell apart. */
typedef enum role {
    ROLE_TOKEN_EMBD, ROLE_OUTPUT, ROLE_ATTN_Q, ROLE_ATTN_K, ROLE_ATTN_V, ROLE_ATTN_OUTPUT,
    ROLE_FFN_GATE, ROLE_FFN_UP, ROLE_FFN_DOWN
} role;

/* The type the recipe wants for a matrix of `role` in `layer`, before any
 * fallback for its row length. */
static uint32_t
recipe_type(const type_choice *tc, const options *o, role r, int64_t layer)
{
    uint32_t base = tc->matrix_type;
    int64_t n = o->layers, n_gqa = o->heads / o->kv_heads;

    if (r == ROLE_OUTPUT || (r == ROLE_TOKEN_EMBD && o->tied))
    {
        /* a row that is not whole base blocks makes llama.cpp pick Q8_0 */
        if (tc->rules == RECIPE_UNIFORM)
            return base;
        if (tc->rules == RECIPE_MXFP4 || pgi_row_bytes(base, o->dim) == 0)
            return PGI_TYPE_Q8_0;
        return PGI_TYPE_Q6_K;
    }
    switch (tc->rules)
    {
        case RECIPE_Q4_K_M:
        case RECIPE_Q5_K_M:
            if ((r == ROLE_ATTN_V || r == ROLE_FFN_DOWN) && use_more_bits(layer, n))
                return PGI_TYPE_Q6_K;
            return base;
        case RECIPE_Q3_K_M:
            if (r == ROLE_ATTN_V)
                return layer < 2 ? PGI_TYPE_Q5_K : PGI_TYPE_Q4_K;
            if (r == ROLE_FFN_DOWN)
                return layer < n / 16 ? PGI_TYPE_Q5_K : PGI_TYPE_Q4_K;
            if (r == ROLE_ATTN_OUTPUT)
                return PGI_TYPE_Q4_K;
            return base;
        case RECIPE_Q2_K:
            if (r == ROLE_ATTN_V)
                return n_gqa >= 4 ? PGI_TYPE_Q4_K : PGI_TYPE_Q3_K;
            if (r == ROLE_FFN_DOWN || r == ROLE_ATTN_OUTPUT)
                return PGI_TYPE_Q3_K;
            return base;
        case RECIPE_IQ4:
            if (r == ROLE_ATTN_V && n_gqa >= 4)
                return PGI_TYPE_Q5_K;
            if (r == ROLE_FFN_DOWN && layer < n / 8)
                return PGI_TYPE_Q5_K;
            return base;
        default:
            return base;
    }
}

/* The type a row of `row` elements can take, falling back when the row is
 * not a whole number of blocks (llama.cpp's tensor_type_fallback). */
static uint32_t
fit_type(uint32_t wanted, int64_t row)
{
    while (pgi_row_bytes(wanted, row) == 0)
    {
        if (wanted == PGI_TYPE_Q2_K || wanted == PGI_TYPE_Q3_K)
            wanted = PGI_TYPE_Q4_0;
        else if (wanted == PGI_TYPE_Q4_K)
            wanted = PGI_TYPE_Q5_0;
        else if (wanted == PGI_TYPE_Q5_K)
            wanted = PGI_TYPE_Q5_1;
        else if (wanted == PGI_TYPE_Q6_K)
            wanted = PGI_TYPE_Q8_0;
        else if (wanted == PGI_TYPE_IQ4_XS)
            wanted = PGI_TYPE_IQ4_NL;
        else
            return PGI_TYPE_F16;
    }
    return wanted;
}

static void
plan_add(planned_tensor *plan, int *n, const char *name, int64_t d0, int64_t d1, uint32_t type,
         tensor_kind kind)
{
    planned_tensor *t = &plan[(*n)++];

    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dims[0] = d0;
    t->dims[1] = d1;
    t->dims[2] = 1;
    t->n_dims = d1 > 0 ? 2 : 1;
    t->wanted = kind == KIND_MATRIX ? type : PGI_TYPE_F32;
    t->type = kind == KIND_MATRIX ? fit_type(type, d0) : PGI_TYPE_F32;
    t->kind = kind;
}

/* A 3-D tensor: n matrices of d1 rows of d0 (the experts). */
static void
plan_add_3d(planned_tensor *plan, int *n, const char *name, int64_t d0, int64_t d1, int64_t d2,
            uint32_t type, tensor_kind kind)
{
    plan_add(plan, n, name, d0, d1, type, kind);
    plan[*n - 1].dims[2] = d2;
    plan[*n - 1].n_dims = 3;
}

/*
 * An encoder's tensors as llama.cpp's converter names them: token, type
 * (2 types) and, for bert, position embeddings, their LayerNorm; per layer
 * Q/K/V with biases (bert) or a fused attn_qkv (nomic-bert), the output
 * projection (bias: bert), a LayerNorm after each residual add, the FFN
 * (bert: up and down with biases; nomic-bert: gate, up, down).  No output
 * norm and no LM head.
 */
static int
make_encoder_plan(const options *o, const type_choice *tc, int64_t n_vocab, planned_tensor *plan)
{
    int n = 0;
    const family *fam = family_of(o->arch);
    int64_t q_dim = o->head_dim * o->heads;
    char name[64];

    plan_add(plan, &n, "token_embd.weight", o->dim, n_vocab, recipe_type(tc, o, ROLE_TOKEN_EMBD, 0),
             KIND_MATRIX);
    plan_add(plan, &n, "token_types.weight", o->dim, 2, PGI_TYPE_F32, KIND_MATRIX);
    if (!fam->fused)
        plan_add(plan, &n, "position_embd.weight", o->dim, o->context,
                 recipe_type(tc, o, ROLE_TOKEN_EMBD, 0), KIND_MATRIX);
    plan_add(plan, &n, "token_embd_norm.weight", o->dim, 0, 0, KIND_NORM);
    plan_add(plan, &n, "token_embd_norm.bias", o->dim, 0, 0, KIND_BIAS);
    for (int64_t l = 0; l < o->layers; l++)
    {
#define BLK(suffix) (snprintf(name, sizeof(name), "blk.%lld." suffix, (long long) l), name)
#define TYPE(r) recipe_type(tc, o, r, l)
        if (fam->fused)
            plan_add(plan, &n, BLK("attn_qkv.weight"), o->dim, 3 * q_dim, TYPE(ROLE_ATTN_Q),
                     KIND_MATRIX);
        else
        {
            plan_add(plan, &n, BLK("attn_q.weight"), o->dim, q_dim, TYPE(ROLE_ATTN_Q), KIND_MATRIX);
            plan_add(plan, &n, BLK("attn_q.bias"), q_dim, 0, 0, KIND_BIAS);
            plan_add(plan, &n, BLK("attn_k.weight"), o->dim, q_dim, TYPE(ROLE_ATTN_K), KIND_MATRIX);
            plan_add(plan, &n, BLK("attn_k.bias"), q_dim, 0, 0, KIND_BIAS);
            plan_add(plan, &n, BLK("attn_v.weight"), o->dim, q_dim, TYPE(ROLE_ATTN_V), KIND_MATRIX);
            plan_add(plan, &n, BLK("attn_v.bias"), q_dim, 0, 0, KIND_BIAS);
        }
        plan_add(plan, &n, BLK("attn_output.weight"), q_dim, o->dim, TYPE(ROLE_ATTN_OUTPUT),
                 KIND_MATRIX);
        if (!fam->fused)
            plan_add(plan, &n, BLK("attn_output.bias"), o->dim, 0, 0, KIND_BIAS);
        plan_add(plan, &n, BLK("attn_output_norm.weight"), o->dim, 0, 0, KIND_NORM);
        plan_add(plan, &n, BLK("attn_output_norm.bias"), o->dim, 0, 0, KIND_BIAS);
        if (fam->fused)
            plan_add(plan, &n, BLK("ffn_gate.weight"), o->dim, o->ffn, TYPE(ROLE_FFN_GATE),
                     KIND_MATRIX);
        plan_add(plan, &n, BLK("ffn_up.weight"), o->dim, o->ffn, TYPE(ROLE_FFN_UP), KIND_MATRIX);
        if (!fam->fused)
            plan_add(plan, &n, BLK("ffn_up.bias"), o->ffn, 0, 0, KIND_BIAS);
        plan_add(plan, &n, BLK("ffn_down.weight"), o->ffn, o->dim, TYPE(ROLE_FFN_DOWN), KIND_MATRIX);
        if (!fam->fused)
            plan_add(plan, &n, BLK("ffn_down.bias"), o->dim, 0, 0, KIND_BIAS);
        plan_add(plan, &n, BLK("layer_output_norm.weight"), o->dim, 0, 0, KIND_NORM);
        plan_add(plan, &n, BLK("layer_output_norm.bias"), o->dim, 0, 0, KIND_BIAS);
#undef TYPE
#undef BLK
    }
    return n;
}

static int
make_plan(const options *o, const type_choice *tc, int64_t n_vocab, planned_tensor *plan)
{
    int n = 0;
    const family *fam = family_of(o->arch);
    int64_t q_dim = o->head_dim * o->heads;
    int64_t kv_dim = o->head_dim * o->kv_heads;
    uint32_t expert = o->expert_type != UINT32_MAX ? o->expert_type : tc->matrix_type;
    char name[64];

    if (fam->encoder)
        return make_encoder_plan(o, tc, n_vocab, plan);
    plan_add(plan, &n, "token_embd.weight", o->dim, n_vocab, recipe_type(tc, o, ROLE_TOKEN_EMBD, 0),
             KIND_MATRIX);
    for (int64_t l = 0; l < o->layers; l++)
    {
#define BLK(suffix) (snprintf(name, sizeof(name), "blk.%lld." suffix, (long long) l), name)
#define TYPE(r) recipe_type(tc, o, r, l)
        plan_add(plan, &n, BLK("attn_norm.weight"), o->dim, 0, 0, KIND_NORM);
        if (fam->fused)
            plan_add(plan, &n, BLK("attn_qkv.weight"), o->dim, q_dim + 2 * kv_dim,
                     TYPE(ROLE_ATTN_Q), KIND_MATRIX);
        else
        {
            plan_add(plan, &n, BLK("attn_q.weight"), o->dim, q_dim, TYPE(ROLE_ATTN_Q), KIND_MATRIX);
            plan_add(plan, &n, BLK("attn_k.weight"), o->dim, kv_dim, TYPE(ROLE_ATTN_K), KIND_MATRIX);
            plan_add(plan, &n, BLK("attn_v.weight"), o->dim, kv_dim, TYPE(ROLE_ATTN_V), KIND_MATRIX);
        }
        if (fam->qkv_bias)
        {
            plan_add(plan, &n, BLK("attn_q.bias"), q_dim, 0, 0, KIND_BIAS);
            plan_add(plan, &n, BLK("attn_k.bias"), kv_dim, 0, 0, KIND_BIAS);
            plan_add(plan, &n, BLK("attn_v.bias"), kv_dim, 0, 0, KIND_BIAS);
        }
        if (fam->qk_norm)
        {
            plan_add(plan, &n, BLK("attn_q_norm.weight"), o->head_dim, 0, 0, KIND_NORM);
            plan_add(plan, &n, BLK("attn_k_norm.weight"), o->head_dim, 0, 0, KIND_NORM);
        }
        plan_add(plan, &n, BLK("attn_output.weight"), q_dim, o->dim, TYPE(ROLE_ATTN_OUTPUT),
                 KIND_MATRIX);
        if (fam->oai)
        {
            plan_add(plan, &n, BLK("attn_output.bias"), o->dim, 0, 0, KIND_BIAS);
            plan_add(plan, &n, BLK("attn_sinks.weight"), o->heads, 0, 0, KIND_BIAS);
        }
        if (fam->post_norms)
            plan_add(plan, &n, BLK("post_attention_norm.weight"), o->dim, 0, 0, KIND_NORM);
        /* gpt-oss stores its FFN norm under this name */
        plan_add(plan, &n, fam->oai ? BLK("post_attention_norm.weight") : BLK("ffn_norm.weight"),
                 o->dim, 0, 0, KIND_NORM);
        if (fam->experts)
        {
            /* the router stays F32, as llama.cpp's quantizer keeps it */
            plan_add(plan, &n, BLK("ffn_gate_inp.weight"), o->dim, o->experts, PGI_TYPE_F32,
                     KIND_MATRIX);
            plan_add_3d(plan, &n, BLK("ffn_gate_exps.weight"), o->dim, o->expert_ffn, o->experts,
                        expert, KIND_MATRIX);
            plan_add_3d(plan, &n, BLK("ffn_up_exps.weight"), o->dim, o->expert_ffn, o->experts,
                        expert, KIND_MATRIX);
            plan_add_3d(plan, &n, BLK("ffn_down_exps.weight"), o->expert_ffn, o->dim, o->experts,
                        expert, KIND_MATRIX);
            if (fam->oai)
            {
                plan_add(plan, &n, BLK("ffn_gate_inp.bias"), o->experts, 0, 0, KIND_BIAS);
                plan_add(plan, &n, BLK("ffn_gate_exps.bias"), o->expert_ffn, o->experts, 0,
                         KIND_BIAS);
                plan_add(plan, &n, BLK("ffn_up_exps.bias"), o->expert_ffn, o->experts, 0,
                         KIND_BIAS);
                plan_add(plan, &n, BLK("ffn_down_exps.bias"), o->dim, o->experts, 0, KIND_BIAS);
            }
        }
        else if (fam->fused)
            plan_add(plan, &n, BLK("ffn_up.weight"), o->dim, 2 * o->ffn, TYPE(ROLE_FFN_UP),
                     KIND_MATRIX);
        else
        {
            plan_add(plan, &n, BLK("ffn_gate.weight"), o->dim, o->ffn, TYPE(ROLE_FFN_GATE),
                     KIND_MATRIX);
            plan_add(plan, &n, BLK("ffn_up.weight"), o->dim, o->ffn, TYPE(ROLE_FFN_UP), KIND_MATRIX);
        }
        if (!fam->experts)
            plan_add(plan, &n, BLK("ffn_down.weight"), o->ffn, o->dim, TYPE(ROLE_FFN_DOWN),
                     KIND_MATRIX);
        if (fam->post_norms)
            plan_add(plan, &n, BLK("post_ffw_norm.weight"), o->dim, 0, 0, KIND_NORM);
#undef TYPE
#undef BLK
    }
    if (o->longrope_original > 0)
    {
        /* short factors near 1, long ones growing to several times */
        plan_add(plan, &n, "rope_factors_short.weight", o->head_dim / 2, 0, 0, KIND_ROPE_FACTORS);
        plan[n - 1].factor_step = 2;
        plan_add(plan, &n, "rope_factors_long.weight", o->head_dim / 2, 0, 0, KIND_ROPE_FACTORS);
        plan[n - 1].factor_step = 25;
    }
    plan_add(plan, &n, "output_norm.weight", o->dim, 0, 0, KIND_NORM);
    if (!o->tied)
        plan_add(plan, &n, "output.weight", o->dim, n_vocab, recipe_type(tc, o, ROLE_OUTPUT, 0),
                 KIND_MATRIX);
    return n;
}

/* ------------------------------------------------------------ metadata */

#define TRY(call)                                                            \
    do {                                                                     \
        if ((call) != PGI_OK)                                                \
        {                                                                    \
            fprintf(stderr, "make_synthetic_model: %s\n", err.message);     \
            goto fail;                                                       \
        }                                                                    \
    } while (0)

/* A stand-in SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte
 * tokens, then pieces named "tok<N>". */
static pgi_status
add_generated_vocab(gguf_writer *w, int64_t n_vocab, pgi_error *err)
{
    char **tokens = pgi_calloc((size_t) n_vocab, sizeof(char *));
    float *scores = pgi_calloc((size_t) n_vocab, sizeof(float));
    int32_t *types = pgi_calloc((size_t) n_vocab, sizeof(int32_t));
    pgi_status st = PGI_ERR_OUT_OF_MEMORY;

    if (tokens == NULL || scores == NULL || types == NULL)
        goto done;
    for (int64_t i = 0; i < n_vocab; i++)
    {
        char piece[32];

        if (i == 0)
            snprintf(piece, sizeof(piece), "<unk>");
        else if (i == 1)
            snprintf(piece, sizeof(piece), "<s>");
        else if (i == 2)
            snprintf(piece, sizeof(piece), "</s>");
        else if (i < 3 + 256)
            snprintf(piece, sizeof(piece), "<0x%02X>", (unsigned) (i - 3));
        else
            snprintf(piece, sizeof(piece), "tok%lld", (long long) i);
        tokens[i] = pgi_strdup(piece);
        if (tokens[i] == NULL)
            goto done;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 3 + 256 ? 6 : 1;
        scores[i] = i < 3 + 256 ? 0.0f : -(float) i;
    }
    if ((st = gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", err)) != PGI_OK ||
        (st = gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", (const char *const *) tokens,
                                           (uint64_t) n_vocab, err)) != PGI_OK ||
        (st = gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_VALUE_FLOAT32, scores,
                                    (uint64_t) n_vocab, err)) != PGI_OK ||
        (st = gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_VALUE_INT32, types,
                                    (uint64_t) n_vocab, err)) != PGI_OK ||
        (st = gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0, err)) != PGI_OK ||
        (st = gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1, err)) != PGI_OK ||
        (st = gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2, err)) != PGI_OK)
        goto done;
    st = PGI_OK;
done:
    if (st == PGI_ERR_OUT_OF_MEMORY && err != NULL && err->message[0] == '\0')
        pgi_fail(err, st, "out of memory building a vocabulary");
    if (tokens != NULL)
        for (int64_t i = 0; i < n_vocab; i++)
            pgi_free(tokens[i]);
    pgi_free(tokens);
    pgi_free(scores);
    pgi_free(types);
    return st;
}

static pgi_status
add_metadata(gguf_writer *w, const options *o, const type_choice *tc, int64_t n_vocab,
             bool any_quantized, pgi_error *err)
{
    char key[128];
    char name[128];
    pgi_status st = PGI_OK;

#define KEY(suffix) (snprintf(key, sizeof(key), "%s." suffix, o->arch), key)
#define ADD(call) do { if ((st = (call)) != PGI_OK) return st; } while (0)
    snprintf(name, sizeof(name), "synthetic %s %s", o->arch, tc->name);
    ADD(gguf_writer_add_string(w, "general.architecture", o->arch, err));
    ADD(gguf_writer_add_string(w, "general.name", name, err));
    ADD(gguf_writer_add_u32(w, "general.file_type", tc->file_type, err));
    if (any_quantized)
        ADD(gguf_writer_add_u32(w, "general.quantization_version", 2, err));
    ADD(gguf_writer_add_u32(w, KEY("context_length"), (uint32_t) o->context, err));
    ADD(gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t) o->dim, err));
    ADD(gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t) o->ffn, err));
    ADD(gguf_writer_add_u32(w, KEY("block_count"), (uint32_t) o->layers, err));
    ADD(gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t) o->heads, err));
    ADD(gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t) o->kv_heads, err));
    ADD(gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t) o->head_dim, err));
    if (family_of(o->arch)->writes_head_dim)
    {
        ADD(gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t) o->head_dim, err));
        ADD(gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t) o->head_dim, err));
    }
    if (o->sliding_window > 0)
        ADD(gguf_writer_add_u32(w, KEY("attention.sliding_window"), (uint32_t) o->sliding_window,
                                err));
    if (o->longrope_original > 0)
    {
        /* Phi-3's converter: attn_factor = sqrt(1 + ln(ctx / orig) / ln(orig)) */
        double scale = (double) o->context / (double) o->longrope_original;

        ADD(gguf_writer_add_u32(w, KEY("rope.scaling.original_context_length"),
                                (uint32_t) o->longrope_original, err));
        ADD(gguf_writer_add_f32(w, KEY("rope.scaling.attn_factor"),
                                scale > 1.0 ? (float) sqrt(1.0 + log(scale) / log((double) o->longrope_original))
                                            : 1.0f, err));
    }
    if (o->yarn_factor > 0)
    {
        ADD(gguf_writer_add_string(w, KEY("rope.scaling.type"), "yarn", err));
        ADD(gguf_writer_add_f32(w, KEY("rope.scaling.factor"), (float) o->yarn_factor, err));
        ADD(gguf_writer_add_u32(w, KEY("rope.scaling.original_context_length"),
                                (uint32_t) (o->yarn_original > 0 ? o->yarn_original : o->context),
                                err));
    }
    if (family_of(o->arch)->experts)
    {
        ADD(gguf_writer_add_u32(w, KEY("expert_count"), (uint32_t) o->experts, err));
        ADD(gguf_writer_add_u32(w, KEY("expert_used_count"), (uint32_t) o->experts_used, err));
        ADD(gguf_writer_add_u32(w, KEY("expert_feed_forward_length"), (uint32_t) o->expert_ffn,
                                err));
    }
    if (family_of(o->arch)->encoder)
    {
        /* LayerNorm's epsilon, the pooling (llama.cpp's numbers), no mask */
        ADD(gguf_writer_add_f32(w, KEY("attention.layer_norm_epsilon"), o->rms_eps, err));
        ADD(gguf_writer_add_u32(w, KEY("pooling_type"), (uint32_t) o->pooling, err));
        ADD(gguf_writer_add_bool(w, KEY("attention.causal"), false, err));
    }
    else
        ADD(gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), o->rms_eps, err));
    ADD(gguf_writer_add_f32(w, KEY("rope.freq_base"), o->rope_base, err));
    ADD(gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t) n_vocab, err));
#undef KEY
#undef ADD
    return st;
}

/* ------------------------------------------------------------ main */

static void
usage(void)
{
    fprintf(stderr,
            "usage: make_synthetic_model [options] -o FILE\n"
            "  --type T             tensor type (default f16), with llama.cpp's recipe for\n"
            "                       mixed types: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1\n"
            "                       q2_k q3_k_m q4_k_m q5_k_m iq4_nl iq4_xs mxfp4\n"
            "  --dim N --ffn N --layers N --heads N --kv-heads N --context N\n"
            "                                         shape (default 768 2048 12 12 12 2048)\n"
            "  --vocab-from FILE    copy tokenizer.* from a GGUF (e.g. a vocab-only file)\n"
            "  --vocab-size N       without --vocab-from: a generated vocabulary of N tokens\n"
            "  --tied               no output.weight (the embedding is reused)\n"
            "  --pooling N          bert, nomic-bert: pooling_type (1 mean, 2 cls, 3 last; default 1)\n"
            "  --arch llama|qwen2|qwen3|gemma3|phi3|qwen3moe|gpt-oss|bert|nomic-bert   the family's tensors and\n"
            "                       keys (default llama): qwen2 Q/K/V biases; qwen3 Q/K norms;\n"
            "                       gemma3 Q/K norms, post norms, GELU; phi3 fused attn_qkv and\n"
            "                       gate|up; qwen3moe Q/K norms and experts; gpt-oss experts with\n"
            "                       biases, attention sinks, sliding window\n"
            "  --head-dim N         head size when not dim/heads (qwen3, gemma3)\n"
            "  --sliding-window N   gemma3: local layers see N tokens (5 local : 1 global);\n"
            "                       gpt-oss: every other layer (default 128)\n"
            "  --longrope N         phi3: LongRoPE short and long factors and attn_factor, for an\n"
            "                       original context of N (the long ones apply above it)\n"
            "  --yarn F [--yarn-original N]   YaRN RoPE scaling by F from an original context of\n"
            "                       N (default --context)\n"
            "  --experts N --experts-used K [--expert-ffn N] [--expert-type TYPE]\n"
            "                       qwen3moe, gpt-oss: N experts of FFN width N (default --ffn),\n"
            "                       K per token, in TYPE (default the --type's base type)\n"
            "  --rope-base F --rms-eps F   (defaults 10000, 1e-5)\n"
            "  --seed N             (default 1)\n");
}

static bool
parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v <= 0 || v > (1ll << 31))
        return false;
    *out = v;
    return true;
}

static bool
parse_options(int argc, char **argv, options *o)
{
    *o = (options) {.type_name = "f16", .dim = 768, .ffn = 2048, .layers = 12, .heads = 12,
                    .context = 2048, .arch = "llama", .expert_type = UINT32_MAX, .seed = 1, .pooling = 1,
                    .rope_base = 10000.0f, .rms_eps = 1e-5f};
    for (int i = 1; i < argc; i++)
    {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;

        if (strcmp(a, "--tied") == 0)
        {
            o->tied = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return false;
        if (v == NULL)
        {
            fprintf(stderr, "make_synthetic_model: %s needs a value\n", a);
            return false;
        }
        i++;
        if (strcmp(a, "--type") == 0)
            o->type_name = v;
        else if (strcmp(a, "--dim") == 0)
            ok = parse_int(v, &o->dim);
        else if (strcmp(a, "--ffn") == 0)
            ok = parse_int(v, &o->ffn);
        else if (strcmp(a, "--layers") == 0)
            ok = parse_int(v, &o->layers);
        else if (strcmp(a, "--heads") == 0)
            ok = parse_int(v, &o->heads);
        else if (strcmp(a, "--kv-heads") == 0)
            ok = parse_int(v, &o->kv_heads);
        else if (strcmp(a, "--context") == 0)
            ok = parse_int(v, &o->context);
        else if (strcmp(a, "--vocab-size") == 0)
            ok = parse_int(v, &o->vocab_size);
        else if (strcmp(a, "--vocab-from") == 0)
            o->vocab_from = v;
        else if (strcmp(a, "--arch") == 0)
            o->arch = v;
        else if (strcmp(a, "--head-dim") == 0)
            ok = parse_int(v, &o->head_dim);
        else if (strcmp(a, "--sliding-window") == 0)
            ok = parse_int(v, &o->sliding_window);
        else if (strcmp(a, "--experts") == 0)
            ok = parse_int(v, &o->experts);
        else if (strcmp(a, "--experts-used") == 0)
            ok = parse_int(v, &o->experts_used);
        else if (strcmp(a, "--expert-ffn") == 0)
            ok = parse_int(v, &o->expert_ffn);
        else if (strcmp(a, "--expert-type") == 0)
            o->expert_type_name = v;
        else if (strcmp(a, "--yarn") == 0)
            ok = parse_int(v, &o->yarn_factor);
        else if (strcmp(a, "--yarn-original") == 0)
            ok = parse_int(v, &o->yarn_original);
        else if (strcmp(a, "--pooling") == 0)
            ok = parse_int(v, &o->pooling) && o->pooling <= 3;
        else if (strcmp(a, "--longrope") == 0)
            ok = parse_int(v, &o->longrope_original);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--rope-base") == 0)
            o->rope_base = strtof(v, NULL);
        else if (strcmp(a, "--rms-eps") == 0)
            o->rms_eps = strtof(v, NULL);
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            o->output = v;
        else
        {
            fprintf(stderr, "make_synthetic_model: unknown option %s\n", a);
            return false;
        }
        if (!ok)
        {
            fprintf(stderr, "make_synthetic_model: %s wants a positive integer, not '%s'\n", a, v);
            return false;
        }
    }
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    if (o->output == NULL)
    {
        fprintf(stderr, "make_synthetic_model: -o FILE is required\n");
        return false;
    }
    if (family_of(o->arch) == NULL)
    {
        fprintf(stderr, "make_synthetic_model: --arch must be one of llama, qwen2, qwen3, gemma3, "
                        "phi3, qwen3moe, gpt-oss, bert, nomic-bert\n");
        return false;
    }
    if (o->head_dim == 0 && o->dim % o->heads != 0)
    {
        fprintf(stderr, "make_synthetic_model: dim must split into heads (or give --head-dim)\n");
        return false;
    }
    if (o->head_dim == 0)
        o->head_dim = o->dim / o->heads;
    if (o->heads % o->kv_heads != 0 || o->head_dim % 2 != 0)
    {
        fprintf(stderr, "make_synthetic_model: heads must be of an even size and split into "
                        "kv-heads groups\n");
        return false;
    }
    if (family_of(o->arch)->experts &&
        (o->experts == 0 || o->experts_used == 0 || o->experts_used > o->experts))
    {
        fprintf(stderr, "make_synthetic_model: --arch %s needs --experts N and --experts-used K "
                        "(K <= N)\n", o->arch);
        return false;
    }
    if (family_of(o->arch)->experts && o->expert_ffn == 0)
        o->expert_ffn = o->ffn;
    if (strcmp(o->arch, "gpt-oss") == 0 && o->sliding_window == 0)
        o->sliding_window = 128;    /* a key llama.cpp requires of gpt-oss files */
    if (o->head_dim * o->heads != o->dim && !family_of(o->arch)->writes_head_dim)
    {
        fprintf(stderr, "make_synthetic_model: --head-dim other than dim/heads needs an arch that "
                        "records it (qwen3, gemma3)\n");
        return false;
    }
    if (o->vocab_from == NULL && o->vocab_size == 0)
    {
        fprintf(stderr, "make_synthetic_model: give --vocab-from FILE or --vocab-size N\n");
        return false;
    }
    if (o->vocab_size != 0 && o->vocab_size < 3 + 256)
    {
        fprintf(stderr, "make_synthetic_model: --vocab-size must be at least 259\n");
        return false;
    }
    return true;
}

int
main(int argc, char **argv)
{
    options o;
    const type_choice *tc = NULL;
    pgi_error err = {0};
    gguf_file *vocab = NULL;
    gguf_writer *w = NULL;
    planned_tensor *plan = NULL;
    float *row = NULL;
    uint8_t *converted = NULL;
    int n_tensors, type_counts[PGI_TYPE_COUNT] = {0};
    int64_t n_vocab = 0, max_row = 0;
    uint64_t params = 0, data_bytes = 0;
    bool any_quantized = false;
    clock_t started = clock();

    if (!parse_options(argc, argv, &o))
    {
        usage();
        return 2;
    }
    for (size_t i = 0; i < sizeof(type_choices) / sizeof(type_choices[0]); i++)
        if (strcmp(type_choices[i].name, o.type_name) == 0)
            tc = &type_choices[i];
    if (tc == NULL)
    {
        fprintf(stderr, "make_synthetic_model: unknown --type %s\n", o.type_name);
        usage();
        return 2;
    }
    if (o.expert_type_name != NULL)
    {
        for (size_t i = 0; i < sizeof(type_choices) / sizeof(type_choices[0]); i++)
            if (strcmp(type_choices[i].name, o.expert_type_name) == 0)
                o.expert_type = type_choices[i].matrix_type;
        if (o.expert_type == UINT32_MAX)
        {
            fprintf(stderr, "make_synthetic_model: unknown --expert-type %s\n", o.expert_type_name);
            return 2;
        }
    }

    TRY(gguf_writer_create(&w, &err));
    if (o.vocab_from != NULL)
    {
        gguf_value_type element_type;
        uint64_t count = 0;

        TRY(gguf_open(o.vocab_from, &vocab, &err));
        if (!gguf_get_array(vocab, "tokenizer.ggml.tokens", &element_type, &count) ||
            element_type != GGUF_VALUE_STRING || count == 0 || count > (1u << 31))
        {
            fprintf(stderr, "make_synthetic_model: %s has no tokenizer.ggml.tokens string array\n",
                    o.vocab_from);
            goto fail;
        }
        n_vocab = (int64_t) count;
    }
    else
        n_vocab = o.vocab_size;

    plan = pgi_calloc((size_t) (o.layers * 28 + 8), sizeof(planned_tensor));
    if (plan == NULL)
    {
        fprintf(stderr, "make_synthetic_model: out of memory\n");
        goto fail;
    }
    n_tensors = make_plan(&o, tc, n_vocab, plan);
    for (int i = 0; i < n_tensors; i++)
    {
        any_quantized |= plan[i].type != PGI_TYPE_F32 && plan[i].type != PGI_TYPE_F16 &&
                         plan[i].type != PGI_TYPE_BF16;
        if (plan[i].dims[0] > max_row)
            max_row = plan[i].dims[0];
    }
    TRY(add_metadata(w, &o, tc, n_vocab, any_quantized, &err));
    if (vocab != NULL)
    {
        uint64_t copied = 0;

        TRY(gguf_writer_copy_kvs_with_prefix(w, vocab, "tokenizer.", &copied, &err));
        printf("vocabulary: %lld tokens, %llu tokenizer.* keys from %s\n", (long long) n_vocab,
               (unsigned long long) copied, o.vocab_from);
    }
    else
    {
        TRY(add_generated_vocab(w, n_vocab, &err));
        printf("vocabulary: %lld generated tokens\n", (long long) n_vocab);
    }
    for (int i = 0; i < n_tensors; i++)
        TRY(gguf_writer_add_tensor(w, plan[i].name, plan[i].n_dims, plan[i].dims, plan[i].type, NULL,
                                   &err));

    row = pgi_alloc((size_t) max_row * sizeof(float));
    converted = pgi_alloc((size_t) max_row * sizeof(float));   /* no type is wider than F32 */
    if (row == NULL || converted == NULL)
    {
        fprintf(stderr, "make_synthetic_model: out of memory\n");
        goto fail;
    }
    TRY(gguf_writer_begin_file(w, o.output, &err));
    for (int i = 0; i < n_tensors; i++)
    {
        const planned_tensor *t = &plan[i];
        int64_t rows = t->n_dims >= 2 ? t->dims[1] * t->dims[2] : 1;
        size_t row_bytes = pgi_row_bytes(t->type, t->dims[0]);
        rng r = {o.seed * 0x9e3779b97f4a7c15ull ^ name_hash(t->name), false, 0.0f};

        for (int64_t j = 0; j < rows; j++)
        {
            for (int64_t k = 0; k < t->dims[0]; k++)
                row[k] = t->kind == KIND_ROPE_FACTORS ? 1.0f + 0.01f * (float) t->factor_step * (float) k
                         : t->kind == KIND_NORM ? 1.0f + 0.02f * normal(&r) : 0.02f * normal(&r);
            pgi_quantize_row(t->type, row, converted, t->dims[0]);
            TRY(gguf_writer_write_data(w, converted, row_bytes, &err));
        }
        params += (uint64_t) (t->dims[0] * rows);
        data_bytes += (uint64_t) row_bytes * (uint64_t) rows;
        type_counts[t->type]++;
    }
    TRY(gguf_writer_finish(w, &err));

    printf("wrote %s: %s, arch %s, dim %lld, ffn %lld, layers %lld, heads %lld/%lld kv, "
           "context %lld, vocab %lld%s, seed %llu\n",
           o.output, tc->name, o.arch, (long long) o.dim, (long long) o.ffn, (long long) o.layers,
           (long long) o.heads, (long long) o.kv_heads, (long long) o.context, (long long) n_vocab,
           o.tied ? ", tied embeddings" : "", (unsigned long long) o.seed);
    printf("  %d tensors, %.2fM parameters, %.1f MiB of tensor data, types:", n_tensors,
           (double) params / 1e6, (double) data_bytes / (1024.0 * 1024.0));
    for (int t = 0; t < PGI_TYPE_COUNT; t++)
        if (type_counts[t])
            printf(" %s x%d", pgi_type_name((uint32_t) t), type_counts[t]);
    printf("\n  %.1f s\n", (double) (clock() - started) / CLOCKS_PER_SEC);
    for (int i = 0; i < n_tensors; i++)
        if (plan[i].type != plan[i].wanted)
            printf("  note: %s is %s (a row of %lld is not a whole number of %s blocks)\n",
                   plan[i].name, pgi_type_name(plan[i].type), (long long) plan[i].dims[0],
                   pgi_type_name(plan[i].wanted));

    pgi_free(row);
    pgi_free(converted);
    pgi_free(plan);
    gguf_writer_free(w);
    gguf_close(vocab);
    return 0;

fail:
    pgi_free(row);
    pgi_free(converted);
    pgi_free(plan);
    gguf_writer_free(w);   /* removes a partial output file */
    gguf_close(vocab);
    return 1;
}
