/*
** linear.h -- the fully connected layer y = x W^T + b (row-wise, any batch), and the PyTorch-style uniform
** initialisation other modules reuse for their weight matrices.
*/
#ifndef RL_LINEAR_H
#define RL_LINEAR_H

#include "module.h"

/* A Linear module with params "weight" (out x in) and, if bias != 0, "bias" (out), both drawn from
** U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear does. Returns NULL (message in rl_error()) on bad sizes. */
rl_module *rl_linear_new(int64_t in, int64_t out, int bias, rl_rng *g);

/* Fills x (n values) with draws from U(-bound, bound). */
void rl_init_uniform(real *x, int64_t n, double bound, rl_rng *g);

#endif
