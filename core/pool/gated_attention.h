/*
** gated_attention.h -- gated attention pooling (Ilse, Tomczak & Welling 2018): for each row
** u_n = tanh(W1 x_n), v_n = gate(W2 x_n), s_n = w3 . (u_n * v_n); a = softmax of s over the set; the output is
** sum_n a_n x_n (width dim). gate is the elementwise sigmoid (paper, default) or the softmax over the hidden
** units (compat = RL_COMPAT_REFERENCE, as the authors' code).
** Params: "linear_r1.weight" (hidden x dim), "linear_r2.weight" (hidden x dim), "linear_r3.weight" (1 x hidden).
*/
#ifndef RL_POOL_GATED_ATTENTION_H
#define RL_POOL_GATED_ATTENTION_H

#include "../nn/module.h"

/* Weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like torch.nn.Linear (no biases). */
rl_module *rl_pool_gated_attention_new(int64_t dim, int64_t hidden, int compat, rl_rng *g);

/* The attention weights a_n of every row of the last forward (rows values), or NULL before any forward or for
** another kind of module. */
const real *rl_pool_gated_attention_weights(const rl_module *m, int64_t *rows);

#endif
