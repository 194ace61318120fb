/*
 * forward.h — the forward pass of the llama family (llama, qwen2, qwen3,
 * gemma3, phi3, ...) and of BERT-style encoders over a backend's operation table.
 *
 * One pgi_forward_run() computes one pgi_step: any mix of prompt chunks and
 * decode tokens from many sequences.  It uses only the ops of
 * kernels/backend.h, so the same code runs on every backend.  Scratch for
 * max_tokens tokens and max_outputs logit rows is allocated once.
 */
#ifndef PGI_FORWARD_H
#define PGI_FORWARD_H

#include "../kernels/backend.h"
#include "model.h"

typedef struct pgi_forward pgi_forward;

pgi_status pgi_forward_create(pgi_backend *backend, const pgi_model *model, int max_tokens,
                              int max_outputs, pgi_forward **out, pgi_error *err);
void pgi_forward_free(pgi_forward *forward);

/*
 * Runs the step (its K/V go into kv) and leaves the logits of the step's
 * outputs, [n_outputs][vocab], in device memory at *logits (valid until the
 * next run).  Read them with ops->read_floats or ops->argmax.
 */
pgi_status pgi_forward_run(pgi_forward *forward, pgi_kv_cache *kv, const pgi_step *step,
                           const float **logits, pgi_error *err);

/*
 * The same pass without the LM head: leaves the final hidden states of every
 * token of the step, [n_tokens][dim], in device memory at *hidden (valid
 * until the next run): after the output norm for the llama family, the last
 * layer's output for encoders (whose attention is bidirectional: each
 * sequence must be whole in the step).  For embeddings.
 */
pgi_status pgi_forward_run_hidden(pgi_forward *forward, pgi_kv_cache *kv, const pgi_step *step,
                                  const float **hidden, pgi_error *err);

int pgi_forward_max_tokens(const pgi_forward *forward);
int pgi_forward_max_outputs(const pgi_forward *forward);

#endif
