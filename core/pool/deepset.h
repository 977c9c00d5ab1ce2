/*
** deepset.h -- DeepSet pooling as in the ROT-pooling baselines (Zaheer et al. 2017, "mixed" invariant form):
** z = alpha pool(X) + (1 - alpha) max(X), alpha = sigmoid(param "alpha"), then the MLP
** L0 - elu - L2 - elu - L4 - elu - L6 (dim -> hidden -> hidden -> hidden -> dim, with biases).
** pool is the mean (paper default) or the sum (compat = RL_COMPAT_REFERENCE, as the authors' code).
** Params: "alpha" (1), "regressor.{0,2,4,6}.weight" (out x in) and "regressor.{0,2,4,6}.bias" (out).
*/
#ifndef RL_POOL_DEEPSET_H
#define RL_POOL_DEEPSET_H

#include "../nn/module.h"

/* alpha ~ N(0, 1) (torch.randn), Linear weights and biases ~ U(-1/sqrt(in), 1/sqrt(in)) (torch.nn.Linear). */
rl_module *rl_pool_deepset_new(int64_t dim, int64_t hidden, int compat, rl_rng *g);

#endif
