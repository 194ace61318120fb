/*
 * pooling.h — from a sequence's final hidden states to one embedding.
 *
 * An embedding is a pooling of the rows of the last layer's output (after
 * the final norm): their mean, the first row (CLS) or the last row, then,
 * optionally, divided by its L2 norm.  The GGUF key <arch>.pooling_type
 * names the model's pooling with llama.cpp's numbers (0 none, 1 mean,
 * 2 cls, 3 last, 4 rank); a file without the key (a generative model) is
 * pooled by the mean.
 */
#ifndef PGI_POOLING_H
#define PGI_POOLING_H

#include <stdbool.h>
#include <stdint.h>

typedef enum pgi_pooling {
    PGI_POOLING_DEFAULT = 0,     /* as the model says (requests only) */
    PGI_POOLING_MEAN = 1,
    PGI_POOLING_CLS = 2,
    PGI_POOLING_LAST = 3
} pgi_pooling;

/* "mean", "cls", "last"; "default" for PGI_POOLING_DEFAULT. */
const char *pgi_pooling_name(pgi_pooling pooling);

/* Parses "mean", "cls" or "last" (case-insensitive); false for anything else. */
bool pgi_pooling_parse(const char *name, pgi_pooling *out);

/*
 * out[dim] = the pooling of hidden[n_rows][dim] (n_rows >= 1); then, when
 * normalize, out /= ||out||_2 (left as is when the norm is 0).  Sums are
 * taken in double.
 */
void pgi_pool_rows(const float *hidden, int n_rows, int dim, pgi_pooling pooling,
                   bool normalize, float *out);

/* out /= ||out||_2 in place (unchanged when the norm is 0). */
void pgi_l2_normalize(float *v, int dim);

#endif
