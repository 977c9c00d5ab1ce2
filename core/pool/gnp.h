/*
** gnp.h -- generalized norm pooling, as the ROT-pooling baselines define it: with u = |x| + 1e-6, the features
** are split in two blocks; block i pools each feature of a set of N rows as
**   z_d = (sum_n u_nd^p_i)^(1/p_i) / N^q_i,   p_i = softplus(ps_i) capped at RL_GNP_P_MAX, q_i = tanh(qs_i),
** and the output is linear(z) = z W^T + b (width dim). Paper default: block 1 is the first floor(dim/2)
** features, each block has its own q. compat = RL_COMPAT_REFERENCE reproduces the authors' code (split at
** floor(total rows / 2), q_0 for both blocks, p >= 50 mapped to -50); see gnp.c.
** Params: "ps" (2), "qs" (2), "linear.weight" (dim x dim), "linear.bias" (dim).
*/
#ifndef RL_POOL_GNP_H
#define RL_POOL_GNP_H

#include "../nn/module.h"

/* Largest exponent p: softplus(ps) is capped here (the reference's threshold value). */
#define RL_GNP_P_MAX 50.0

/* ps, qs ~ N(0, 1) (torch.randn); linear ~ U(-1/sqrt(dim), 1/sqrt(dim)) (torch.nn.Linear). */
rl_module *rl_pool_gnp_new(int64_t dim, int compat, rl_rng *g);

/* The effective exponents p (2) and powers q (2) of the current parameters (q[1] = q[0] in reference mode), and the
** first column of block 2 for a batch of `rows` rows (reference mode: -1 when rows < 0). 0 on success, RL_EINVAL
** if m is not a gnp module. */
int rl_pool_gnp_values(const rl_module *m, int64_t rows, double p[2], double q[2], int64_t *split);

#endif
