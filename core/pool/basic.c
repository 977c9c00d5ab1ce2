/*
** basic.c -- add, mean and max pooling over ragged sets, parallel across sets. Max keeps the arg-max row of
** every (set, feature) in a module workspace for backward.
*/
#include <string.h>

#include "basic.h"

typedef enum { POOL_ADD, POOL_MEAN, POOL_MAX } basic_kind;

typedef struct basic_pool {
  rl_module base;
  basic_kind kind;
  int64_t dim;           /* expected width, -1 = any */
  rl_workspace argmax;   /* max: sets x D row indices (int64) of the last forward */
} basic_pool;

static int basic_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const basic_pool *p = (const basic_pool *)m;
  int rc = rl_expect_sets(in, p->dim, m->ops->kind);
  if (rc) return rc;
  *cols = rl_cols(&in->values);
  return RL_OK;
}

static int basic_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  basic_pool *p = (basic_pool *)m;
  int64_t B = in->count[0], D = rl_cols(&in->values);
  const int64_t *off = in->offsets[0];
  const real *x = in->values.data;
  int64_t *arg = NULL;
  if (p->kind == POOL_MAX) {
    int rc = rl_workspace_reserve(&p->argmax, (size_t)(B * D) * sizeof(int64_t));
    if (rc) return rc;
    arg = p->argmax.data;
  }
  basic_kind kind = p->kind;
#pragma omp parallel for schedule(static) if (in->values.numel >= RL_POOL_PARALLEL_MIN_WORK)
  for (int64_t s = 0; s < B; s++) {
    real *y = out->data + s * D;
    int64_t lo = off[s], hi = off[s + 1];
    if (kind == POOL_MAX) {
      int64_t *a = arg + s * D;
      memcpy(y, x + lo * D, (size_t)D * sizeof(real));
      for (int64_t d = 0; d < D; d++) a[d] = lo;
      for (int64_t r = lo + 1; r < hi; r++)
        for (int64_t d = 0; d < D; d++)
          if (x[r * D + d] > y[d]) { /* strict: the first row wins ties */
            y[d] = x[r * D + d];
            a[d] = r;
          }
    } else {
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t r = lo; r < hi; r++) acc += x[r * D + d];
        y[d] = (real)(kind == POOL_MEAN ? acc / (double)(hi - lo) : acc);
      }
    }
  }
  return RL_OK;
}

static int basic_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  basic_pool *p = (basic_pool *)m;
  if (!grad_in) return RL_OK; /* no parameters */
  int64_t B = in->count[0], D = rl_cols(&in->values);
  const int64_t *off = in->offsets[0];
  const int64_t *arg = p->argmax.data;
  basic_kind kind = p->kind;
  real *gx = grad_in->data;
#pragma omp parallel for schedule(static) if (in->values.numel >= RL_POOL_PARALLEL_MIN_WORK)
  for (int64_t s = 0; s < B; s++) {
    const real *gy = grad_out->data + s * D;
    int64_t lo = off[s], hi = off[s + 1];
    if (kind == POOL_MAX) {
      memset(gx + lo * D, 0, (size_t)((hi - lo) * D) * sizeof(real));
      for (int64_t d = 0; d < D; d++) gx[arg[s * D + d] * D + d] = gy[d];
    } else {
      real scale = kind == POOL_MEAN ? (real)(1.0 / (double)(hi - lo)) : 1;
      for (int64_t r = lo; r < hi; r++)
        for (int64_t d = 0; d < D; d++) gx[r * D + d] = scale * gy[d];
    }
  }
  return RL_OK;
}

static void basic_destroy(rl_module *m) { rl_workspace_free(&((basic_pool *)m)->argmax); }

static const rl_module_ops add_ops = {"add", basic_out_cols, basic_forward, basic_backward, basic_destroy};
static const rl_module_ops mean_ops = {"mean", basic_out_cols, basic_forward, basic_backward, basic_destroy};
static const rl_module_ops max_ops = {"max", basic_out_cols, basic_forward, basic_backward, basic_destroy};

static rl_module *basic_new(const rl_module_ops *ops, basic_kind kind, int64_t dim) {
  if (dim == 0 || dim < -1) {
    rl_fail(RL_EINVAL, "%s: expected a positive input width (or -1 for any), got %lld", ops->kind, (long long)dim);
    return NULL;
  }
  basic_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, ops, 1);
  p->kind = kind;
  p->dim = dim;
  return &p->base;
}

rl_module *rl_pool_add_new(int64_t dim) { return basic_new(&add_ops, POOL_ADD, dim); }
rl_module *rl_pool_mean_new(int64_t dim) { return basic_new(&mean_ops, POOL_MEAN, dim); }
rl_module *rl_pool_max_new(int64_t dim) { return basic_new(&max_ops, POOL_MAX, dim); }
