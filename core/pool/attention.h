/*
** attention.h -- attention pooling (Ilse, Tomczak & Welling 2018): for a set X, s_n = w^T tanh(V x_n),
** a = softmax of s over the set (RL_SOFTMAX_EPS added to the denominator), output sum_n a_n x_n.
*/
#ifndef RL_POOL_ATTENTION_H
#define RL_POOL_ATTENTION_H

#include "../nn/module.h"

/* Params "V" (hidden x dim) and "w" (1 x hidden), no biases, initialised like torch.nn.Linear weights
** (U(-1/sqrt(fan_in), 1/sqrt(fan_in))). NULL (message in rl_error()) on non-positive sizes. */
rl_module *rl_pool_attention_new(int64_t dim, int64_t hidden, rl_rng *g);

/* The attention weights a_n of every row of the last forward (rows values), or NULL before any forward. */
const real *rl_pool_attention_weights(const rl_module *m, int64_t *rows);

#endif
