/*
** clip.h -- gradient clipping by the global L2 norm over several arrays, as PyTorch's
** torch.nn.utils.clip_grad_norm_ (norm_type 2).
*/
#ifndef RL_OPTIM_CLIP_H
#define RL_OPTIM_CLIP_H

#include "../rl.h"

/* Added to the total norm in the clipping coefficient, as PyTorch does. */
#define RL_CLIP_EPS 1e-6

/* total = sqrt(sum over arrays of sum of squares) of grads[0..count-1] (grads[i] holds sizes[i] values), stored in
** *total_norm. If total is finite and coef = max_norm / (total + RL_CLIP_EPS) < 1, every array is scaled in place
** by coef (PyTorch clamps coef to 1; in effect arrays are scaled when total > max_norm - 1e-6). A non-finite total
** is reported in *total_norm and nothing is scaled (status is still 0: the caller decides). max_norm finite >= 0. */
int rl_clip_grad_norm(int64_t count, real *const *grads, const int64_t *sizes, double max_norm, double *total_norm);

#endif
