/*
** standardize.c -- y = (x - mean) / std per column; backward is the diagonal scaling grad_in = grad_out / std.
*/
#include <math.h>
#include <string.h>

#include "../tensor.h"
#include "standardize.h"

typedef struct standardize {
  rl_module base;
  int64_t dim;
  real *mean;    /* dim */
  real *std;     /* dim */
  real *inv_std; /* dim: 1 / std, so forward and backward multiply */
} standardize;

static int std_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const standardize *s = (const standardize *)m;
  int rc = rl_expect_matrix(&in->values, -1, s->dim, "standardize");
  if (rc) return rc;
  *cols = s->dim;
  return RL_OK;
}

static int std_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  const standardize *s = (const standardize *)m;
  int64_t rows = rl_rows(&in->values), d = s->dim;
  const real *x = in->values.data;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < d; j++) out->data[i * d + j] = (x[i * d + j] - s->mean[j]) * s->inv_std[j];
  return RL_OK;
}

static int std_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  const standardize *s = (const standardize *)m;
  if (!grad_in) return RL_OK;
  int64_t rows = rl_rows(grad_out), d = s->dim;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < d; j++) grad_in->data[i * d + j] = grad_out->data[i * d + j] * s->inv_std[j];
  return RL_OK;
}

static void std_destroy(rl_module *m) {
  standardize *s = (standardize *)m;
  rl_free(s->mean); /* one block holds mean, std and inv_std */
}

static const rl_module_ops standardize_ops = {"standardize", std_out_cols, std_forward, std_backward, std_destroy};

rl_module *rl_standardize_new(int64_t dim, const real *mean, const real *std) {
  if (dim < 1 || dim > RL_MAX_DIM) {
    rl_fail(RL_EINVAL, "standardize: expected a positive width, got %lld", (long long)dim);
    return NULL;
  }
  if (!mean || !std) {
    rl_fail(RL_EINVAL, "standardize: mean and std are required");
    return NULL;
  }
  for (int64_t j = 0; j < dim; j++) {
    if (!isfinite(mean[j])) {
      rl_fail(RL_EINVAL, "standardize: mean[%lld] is not finite (%g)", (long long)j + 1, (double)mean[j]);
      return NULL;
    }
    if (!(std[j] > 0) || !isfinite(std[j])) {
      rl_fail(RL_EINVAL, "standardize: std[%lld] must be finite and > 0, got %g", (long long)j + 1, (double)std[j]);
      return NULL;
    }
  }
  standardize *s = rl_calloc(1, sizeof *s);
  if (!s) return NULL;
  rl_module_init(&s->base, &standardize_ops, 0);
  s->dim = dim;
  s->mean = rl_malloc((size_t)dim * 3 * sizeof(real));
  if (!s->mean) {
    rl_module_free(&s->base);
    return NULL;
  }
  s->std = s->mean + dim;
  s->inv_std = s->std + dim;
  memcpy(s->mean, mean, (size_t)dim * sizeof(real));
  memcpy(s->std, std, (size_t)dim * sizeof(real));
  for (int64_t j = 0; j < dim; j++) s->inv_std[j] = (real)(1.0 / (double)std[j]);
  return &s->base;
}

int rl_standardize_stats(const rl_module *m, const real **mean, const real **std, int64_t *dim) {
  if (!m || m->ops != &standardize_ops) return rl_fail(RL_EINVAL, "expected a standardize module");
  const standardize *s = (const standardize *)m;
  *mean = s->mean;
  *std = s->std;
  *dim = s->dim;
  return RL_OK;
}
