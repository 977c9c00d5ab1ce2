/*
** dropout.c -- inverted dropout. The multiplier of every value (0 or 1/(1-p), or 1 in eval mode) is kept in a
** module workspace so backward applies exactly the mask of the last forward.
*/
#include <math.h>
#include <string.h>

#include "dropout.h"

typedef struct dropout {
  rl_module base;
  double p;
  rl_rng *g;
  rl_workspace mask; /* numel reals: the multiplier of each value in the last forward */
} dropout;

static int dropout_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  int rc = rl_expect_matrix(&in->values, -1, -1, "dropout");
  if (rc) return rc;
  *cols = rl_cols(&in->values);
  return RL_OK;
}

static int dropout_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  dropout *d = (dropout *)m;
  int64_t n = in->values.numel;
  int rc = rl_workspace_reserve(&d->mask, (size_t)n * sizeof(real));
  if (rc) return rc;
  real *mask = d->mask.data;
  if (m->training && d->p > 0) {
    real scale = (real)(1.0 / (1.0 - d->p));
    for (int64_t i = 0; i < n; i++) mask[i] = rl_rng_uniform(d->g) < d->p ? 0 : scale;
  } else {
    rl_fill(mask, n, 1);
  }
  const real *x = in->values.data;
  for (int64_t i = 0; i < n; i++) out->data[i] = x[i] * mask[i];
  return RL_OK;
}

static int dropout_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  dropout *d = (dropout *)m;
  if (!grad_in) return RL_OK;
  const real *mask = d->mask.data;
  for (int64_t i = 0; i < grad_out->numel; i++) grad_in->data[i] = grad_out->data[i] * mask[i];
  return RL_OK;
}

static void dropout_destroy(rl_module *m) { rl_workspace_free(&((dropout *)m)->mask); }

static const rl_module_ops dropout_ops = {"dropout", dropout_out_cols, dropout_forward, dropout_backward,
                                          dropout_destroy};

rl_module *rl_dropout_new(real p, rl_rng *g) {
  if (!(p >= 0 && p < 1)) {
    rl_fail(RL_EINVAL, "dropout: expected a probability in [0, 1), got %g", (double)p);
    return NULL;
  }
  dropout *d = rl_calloc(1, sizeof *d);
  if (!d) return NULL;
  rl_module_init(&d->base, &dropout_ops, 0);
  d->p = p;
  d->g = g;
  return &d->base;
}
