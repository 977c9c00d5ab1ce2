/*
** activation.h -- elementwise activations (row-wise, any width): ReLU, ELU, Tanh, Sigmoid, Softplus, with
** PyTorch's definitions.
*/
#ifndef RL_ACTIVATION_H
#define RL_ACTIVATION_H

#include "module.h"

/* Defaults of torch.nn.ELU and torch.nn.Softplus. */
#define RL_ELU_ALPHA 1.0
#define RL_SOFTPLUS_BETA 1.0
#define RL_SOFTPLUS_THRESHOLD 20.0

rl_module *rl_relu_new(void);                             /* max(x, 0); gradient 0 at x = 0 */
rl_module *rl_elu_new(real alpha);                        /* x > 0 ? x : alpha (exp(x) - 1); alpha finite */
rl_module *rl_tanh_new(void);
rl_module *rl_sigmoid_new(void);
/* log(1 + exp(beta x)) / beta, and x itself where beta x > threshold; beta > 0, threshold finite. */
rl_module *rl_softplus_new(real beta, real threshold);

#endif
