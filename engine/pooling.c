#include "pooling.h"

#include <math.h>
#include <stddef.h>
#include <strings.h>

const char *
pgi_pooling_name(pgi_pooling pooling)
{
    switch (pooling)
    {
        case PGI_POOLING_MEAN:
            return "mean";
        case PGI_POOLING_CLS:
            return "cls";
        case PGI_POOLING_LAST:
            return "last";
        case PGI_POOLING_DEFAULT:
            break;
    }
    return "default";
}

bool
pgi_pooling_parse(const char *name, pgi_pooling *out)
{
    static const pgi_pooling all[] = {PGI_POOLING_MEAN, PGI_POOLING_CLS, PGI_POOLING_LAST};

    for (unsigned i = 0; name != NULL && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcasecmp(name, pgi_pooling_name(all[i])) == 0)
        {
            *out = all[i];
            return true;
        }
    return false;
}

void
pgi_l2_normalize(float *v, int dim)
{
    double sum = 0.0;

    for (int i = 0; i < dim; i++)
        sum += (double) v[i] * v[i];
    if (sum > 0.0)
    {
        double inv = 1.0 / sqrt(sum);

        for (int i = 0; i < dim; i++)
            v[i] = (float) (v[i] * inv);
    }
}

void
pgi_pool_rows(const float *hidden, int n_rows, int dim, pgi_pooling pooling, bool normalize,
              float *out)
{
    if (pooling == PGI_POOLING_CLS || pooling == PGI_POOLING_LAST)
    {
        const float *row = hidden + (size_t) (pooling == PGI_POOLING_CLS ? 0 : n_rows - 1) *
                                        (size_t) dim;

        for (int i = 0; i < dim; i++)
            out[i] = row[i];
    }
    else
    {
        for (int i = 0; i < dim; i++)
        {
            double sum = 0.0;

            for (int r = 0; r < n_rows; r++)
                sum += hidden[(size_t) r * (size_t) dim + (size_t) i];
            out[i] = (float) (sum / n_rows);
        }
    }
    if (normalize)
        pgi_l2_normalize(out, dim);
}
