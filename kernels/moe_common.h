/*
 * moe_common.h — host helpers of mixture of experts shared by the backends
 * (kernels/moe_common.c); the operations themselves are moe_route and
 * moe_ffn of kernels/backend.h.
 */
#ifndef PGI_MOE_COMMON_H
#define PGI_MOE_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

/* moe_route for one token: ids[k], weights[k] from logits[n_expert], as
 * kernels/backend.h defines it. */
void pgi_moe_route_row(int32_t *ids, float *weights, const float *logits,
                       const pgi_moe_router *router);

/* True when the descriptor's shapes agree (expert matrices of n_expert *
 * rows per expert, F32 biases of n_expert rows) and its activation is
 * known. */
bool pgi_moe_experts_valid(const pgi_moe_experts *experts);

/* Groups the pairs p < n_pairs (p = token * k + slot) by ids[p]: counts
 * [2 * n_expert] receives each expert's count (then running offsets in its
 * second half), order[] the pairs sorted by expert, in increasing p within
 * an expert.  Ids outside [0, n_expert) are left out.  Returns the number
 * of pairs placed. */
int pgi_moe_group(const int32_t *ids, int n_pairs, int n_expert, int32_t *counts,
                  int32_t *order);

/* g[i] = act(g[i], u[i]) for i < n (see pgi_moe_activation). */
void pgi_moe_activate(pgi_moe_activation act, float *g, const float *u, int64_t n);

#endif
