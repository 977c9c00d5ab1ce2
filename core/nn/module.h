/*
** module.h -- the one interface every layer shares (Linear, activations, poolings, ROTP, SWE, ...).
**
** Contract (THNN-like, but with module-owned state):
**   out_cols(m, in, &cols)                 validates `in` (shape, levels) and gives the output width. Row-wise
**                                          modules keep the row count; poolings (m->pools = 1) output one row per
**                                          set of level 0 (in->count[0] rows); one that pools sets, then groups
**                                          (m->pools = 2: HROTP set fusion) outputs one row per group of level 1
**                                          (in->count[1] rows). The batch's remaining levels shift down.
**   forward(m, in, out)                    out is allocated by the caller with the shape above; the module caches
**                                          what its backward needs (in workspaces it owns: no allocation per call
**                                          once they are big enough).
**   backward(m, in, grad_out, grad_in)     `in` is the same batch as the last forward; accumulates (+=) parameter
**                                          gradients into params[i].grad and writes (=) grad_in, which may be NULL
**                                          when the caller does not need it.
** Use the rl_module_* wrappers below: they check shapes and call order, so the ops may assume valid arguments.
*/
#ifndef RL_MODULE_H
#define RL_MODULE_H

#include "../rng.h"
#include "../sets.h"

#define RL_PARAM_NAME_LEN 32

typedef struct rl_param {
  char name[RL_PARAM_NAME_LEN]; /* e.g. "weight", "a1", "q0.V" */
  rl_tensor value;              /* raw learnable values (before softplus etc.); owned by the module */
  rl_tensor grad;               /* same shape; backward accumulates into it */
} rl_param;

typedef struct rl_module rl_module;

typedef struct rl_module_ops {
  const char *kind;
  int (*out_cols)(const rl_module *m, const rl_batch *in, int64_t *cols);
  int (*forward)(rl_module *m, const rl_batch *in, rl_tensor *out);
  int (*backward)(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in);
  void (*destroy)(rl_module *m); /* frees what the concrete module allocated (not params, not m); may be NULL */
} rl_module_ops;

struct rl_module {
  const rl_module_ops *ops;
  int pools;     /* number of offset levels the module consumes: 0 row-wise, 1 sets, 2 groups of sets */
  int training;  /* 1 in training mode (the default), 0 in eval mode */
  int nparams;
  rl_param params[RL_MAX_PARAMS];
  /* call-order bookkeeping, maintained by the wrappers */
  int has_forward;
  int64_t forward_rows, forward_cols, forward_sets;
};

/* Initialises the base part of a concrete module (already zeroed by rl_calloc). */
void rl_module_init(rl_module *m, const rl_module_ops *ops, int pools);

/* Adds a named parameter of the given shape, zero-filled, with a zeroed gradient. Returns it, or NULL on error. */
rl_param *rl_module_add_param(rl_module *m, const char *name, int ndim, const int64_t *shape);

/* Finds a parameter by name (NULL if none). */
rl_param *rl_module_param(rl_module *m, const char *name);

/* Checked entry points. */
int rl_module_out_shape(const rl_module *m, const rl_batch *in, int64_t *rows, int64_t *cols);
int rl_module_forward(rl_module *m, const rl_batch *in, rl_tensor *out);
int rl_module_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in);
void rl_module_zero_grad(rl_module *m);

/* Frees everything (safe on NULL). */
void rl_module_free(rl_module *m);

#endif
