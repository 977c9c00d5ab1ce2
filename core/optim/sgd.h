/*
** sgd.h -- stochastic gradient descent with momentum, dampening, L2 weight decay and Nesterov momentum, exactly
** as PyTorch's torch.optim.SGD. Stateless in signature (torch/optim style): the caller owns the parameter, its
** gradient and the momentum buffer, all flat arrays of n values.
*/
#ifndef RL_OPTIM_SGD_H
#define RL_OPTIM_SGD_H

#include "../rl.h"

typedef struct rl_sgd_config {
  double lr;           /* learning rate, finite and >= 0 */
  double momentum;     /* finite and >= 0; 0 means plain SGD (no buffer is used) */
  double dampening;    /* finite; the gradient enters the buffer with weight 1 - dampening (not on step 1) */
  double weight_decay; /* finite and >= 0; adds weight_decay * param to the gradient (L2 penalty) */
  int nesterov;        /* 1: Nesterov momentum; requires momentum > 0 and dampening == 0 */
} rl_sgd_config;

/* PyTorch's defaults: lr 1e-3, no momentum, no dampening, no weight decay, no Nesterov. */
rl_sgd_config rl_sgd_defaults(void);

/* Validates a configuration (RL_EINVAL with a message naming the offending option). */
int rl_sgd_check(const rl_sgd_config *cfg);

/* One update of n values, in place on param (and momentum_buf):
**   g = grad + weight_decay * param
**   if momentum != 0: buf = (step == 1) ? g : momentum * buf + (1 - dampening) * g
**                     g = nesterov ? g + momentum * buf : buf
**   param -= lr * g
** step is the 1-based index of this update (step 1 initialises the buffer from g, like PyTorch's lazily created
** buffer). momentum_buf may be NULL when momentum == 0; grad is not modified. */
int rl_sgd_step(int64_t n, real *param, const real *grad, real *momentum_buf, const rl_sgd_config *cfg,
                int64_t step);

#endif
