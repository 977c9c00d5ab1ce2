/*
** dynamic.h -- dynamic pooling (Yan et al. 2018, dynamic routing for multi-instance learning), no parameters:
** s = 0; k times: z = sum_n softmax(s)_n x_n, E = |z|^2, s_n += x_n . (sqrt(E) / (1 + E) z);
** the output is sum_n softmax(s)_n x_n (one row of the input width per set). The gradient flows through
** every routing iteration.
*/
#ifndef RL_POOL_DYNAMIC_H
#define RL_POOL_DYNAMIC_H

#include "../nn/module.h"

/* dim = expected input width or -1 for any; k in 1..RL_BASELINE_MAX_STEPS routing iterations. */
rl_module *rl_pool_dynamic_new(int64_t dim, int64_t k, int compat);

/* The routing weights softmax(s)_n used for the output, for every row of the last forward (NULL before). */
const real *rl_pool_dynamic_weights(const rl_module *m, int64_t *rows);

#endif
