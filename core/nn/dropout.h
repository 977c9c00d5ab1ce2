/*
** dropout.h -- inverted dropout (row-wise, any width): in training mode each value is zeroed with probability p
** and the survivors are scaled by 1/(1-p); in eval mode it is the identity.
*/
#ifndef RL_DROPOUT_H
#define RL_DROPOUT_H

#include "module.h"

/* p in [0, 1). The module draws from g on every training forward: g must outlive the module (the Lua
** binding keeps its generator alive). Returns NULL (message in rl_error()) on a bad p. */
rl_module *rl_dropout_new(real p, rl_rng *g);

#endif
