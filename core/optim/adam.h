/*
** adam.h -- Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay), with optional AMSGrad,
** exactly as PyTorch's torch.optim.Adam / torch.optim.AdamW. Stateless in signature: the caller owns the
** parameter, its gradient and the moment buffers, all flat arrays of n values.
*/
#ifndef RL_OPTIM_ADAM_H
#define RL_OPTIM_ADAM_H

#include "../rl.h"

typedef struct rl_adam_config {
  double lr;           /* learning rate, finite and >= 0 */
  double beta1, beta2; /* moment decay rates, each in [0, 1) */
  double eps;          /* added to the denominator, finite and >= 0 */
  double weight_decay; /* finite and >= 0 */
  int amsgrad;         /* 1: divide by the running maximum of the second moment (needs max_exp_avg_sq) */
  int decoupled;       /* 0: Adam, grad += weight_decay * param; 1: AdamW, param *= 1 - lr * weight_decay */
} rl_adam_config;

/* PyTorch's defaults: Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0; AdamW the same with
** weight_decay 1e-2 and decoupled = 1. */
rl_adam_config rl_adam_defaults(void);
rl_adam_config rl_adamw_defaults(void);

/* Validates a configuration (RL_EINVAL with a message naming the offending option). */
int rl_adam_check(const rl_adam_config *cfg);

/* One update of n values, in place on param, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad); step is
** the 1-based index t of this update (buffers start at zero):
**   AdamW: param *= 1 - lr * wd           Adam: g = grad + wd * param
**   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  with amsgrad vmax = max(vmax, v) and v := vmax below
**   param -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
** max_exp_avg_sq may be NULL without amsgrad; grad is not modified. */
int rl_adam_step(int64_t n, real *param, const real *grad, real *exp_avg, real *exp_avg_sq, real *max_exp_avg_sq,
                 const rl_adam_config *cfg, int64_t step);

#endif
