/*
** set2set.h -- Set2Set pooling (Vinyals, Bengio & Kudlur 2016, "Order matters"), as torch_geometric's Set2Set:
** an LSTM (input 2 dim, hidden dim) run `steps` times from h = c = q* = 0; each step
**   h = LSTM(q*, (h, c)); a = softmax over the set of x_n . h; r = sum_n a_n x_n; q* = [h, r].
** The output is q* of the last step: one row of width 2 dim per set.
** Params (torch.nn.LSTM names): "lstm.weight_ih_l0" (4 dim x 2 dim), "lstm.weight_hh_l0" (4 dim x dim),
** "lstm.bias_ih_l0" (4 dim), "lstm.bias_hh_l0" (4 dim); gate order i, f, g, o.
*/
#ifndef RL_POOL_SET2SET_H
#define RL_POOL_SET2SET_H

#include "../nn/module.h"

/* Every param ~ U(-1/sqrt(dim), 1/sqrt(dim)) like torch.nn.LSTM. steps in 1..RL_BASELINE_MAX_STEPS. */
rl_module *rl_pool_set2set_new(int64_t dim, int64_t steps, int compat, rl_rng *g);

#endif
