/*
** mixed.h -- mixed and gated mean-max pooling (Lee, Gallagher & Tu 2016, adapted to sets as in the ROT-pooling
** reference code). Both return one row per set of the input width.
**   mixed:       y = alpha mean + (1 - alpha) max,  alpha = sigmoid(param "alpha" (1)).
**   gated_mixed: y = g mean + (1 - g) max, g = sigmoid(w . mean(X)) per set (paper default) or
**                sigmoid(sum_n w . x_n) (compat = RL_COMPAT_REFERENCE); param "linear.weight" (1 x dim).
** Max is per feature; its gradient goes to the first arg-max row.
*/
#ifndef RL_POOL_MIXED_H
#define RL_POOL_MIXED_H

#include "../nn/module.h"

/* dim = expected input width or -1 for any; "alpha" drawn from N(0, 1) like torch.randn(1). */
rl_module *rl_pool_mixed_new(int64_t dim, int compat, rl_rng *g);

/* dim >= 1 required; "linear.weight" ~ U(-1/sqrt(dim), 1/sqrt(dim)) like torch.nn.Linear. */
rl_module *rl_pool_gated_mixed_new(int64_t dim, int compat, rl_rng *g);

#endif
