/*
** linear.c -- the fully connected layer: y = x W^T + b over every row of a batch (levels are untouched, so it
** works on plain rows, sets and groups alike). Products go through rl_gemm.
*/
#include <math.h>

#include "../blas.h"
#include "linear.h"

typedef struct linear {
  rl_module base;
  int64_t in, out;
  int has_bias;
} linear;

void rl_init_uniform(real *x, int64_t n, double bound, rl_rng *g) {
  for (int64_t i = 0; i < n; i++) x[i] = (real)(bound * (2.0 * rl_rng_uniform(g) - 1.0));
}

static int linear_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const linear *l = (const linear *)m;
  int rc = rl_expect_matrix(&in->values, -1, l->in, "linear");
  if (rc) return rc;
  *cols = l->out;
  return RL_OK;
}

static int linear_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  linear *l = (linear *)m;
  int64_t rows = rl_rows(&in->values);
  const real *W = m->params[0].value.data;
  rl_gemm(0, 1, rows, l->out, l->in, 1, in->values.data, l->in, W, l->in, 0, out->data, l->out);
  if (l->has_bias) {
    const real *b = m->params[1].value.data;
    for (int64_t r = 0; r < rows; r++) rl_axpy(l->out, 1, b, out->data + r * l->out);
  }
  return RL_OK;
}

static int linear_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  linear *l = (linear *)m;
  int64_t rows = rl_rows(&in->values);
  const real *gy = grad_out->data, *x = in->values.data;
  /* grad_W (out x in) += gy^T x */
  if (rows > 0) rl_gemm(1, 0, l->out, l->in, rows, 1, gy, l->out, x, l->in, 1, m->params[0].grad.data, l->in);
  if (l->has_bias) {
    real *gb = m->params[1].grad.data;
    for (int64_t j = 0; j < l->out; j++) {
      double s = 0;
      for (int64_t r = 0; r < rows; r++) s += gy[r * l->out + j];
      gb[j] += (real)s;
    }
  }
  /* grad_x (rows x in) = gy W */
  if (grad_in)
    rl_gemm(0, 0, rows, l->in, l->out, 1, gy, l->out, m->params[0].value.data, l->in, 0, grad_in->data, l->in);
  return RL_OK;
}

static const rl_module_ops linear_ops = {"linear", linear_out_cols, linear_forward, linear_backward, NULL};

rl_module *rl_linear_new(int64_t in, int64_t out, int bias, rl_rng *g) {
  if (in < 1) {
    rl_fail(RL_EINVAL, "linear: expected a positive input width, got %lld", (long long)in);
    return NULL;
  }
  if (out < 1) {
    rl_fail(RL_EINVAL, "linear: expected a positive output width, got %lld", (long long)out);
    return NULL;
  }
  linear *l = rl_calloc(1, sizeof *l);
  if (!l) return NULL;
  rl_module_init(&l->base, &linear_ops, 0);
  l->in = in;
  l->out = out;
  l->has_bias = bias != 0;
  int64_t wshape[2] = {out, in}, bshape[1] = {out};
  rl_param *w = rl_module_add_param(&l->base, "weight", 2, wshape);
  rl_param *b = w && bias ? rl_module_add_param(&l->base, "bias", 1, bshape) : NULL;
  if (!w || (bias && !b)) {
    rl_module_free(&l->base);
    return NULL;
  }
  double bound = 1.0 / sqrt((double)in);
  rl_init_uniform(w->value.data, w->value.numel, bound, g);
  if (b) rl_init_uniform(b->value.data, b->value.numel, bound, g);
  return &l->base;
}
