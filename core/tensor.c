/*
** tensor.c -- shape checks and the few elementwise helpers every module needs.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor.h"

rl_tensor rl_matrix(real *data, int64_t rows, int64_t cols) {
  rl_tensor t = {data, 2, {rows, cols, 0, 0}, rows * cols};
  return t;
}

rl_tensor rl_vector(real *data, int64_t n) {
  rl_tensor t = {data, 1, {n, 0, 0, 0}, n};
  return t;
}

int rl_shape_check(int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 1 || ndim > RL_MAX_DIMS)
    return rl_fail(RL_EINVAL, "tensor rank must be 1..%d, got %d", RL_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return rl_fail(RL_EINVAL, "dimension %d is negative (%lld)", i + 1, (long long)shape[i]);
    if (shape[i] > RL_MAX_DIM)
      return rl_fail(RL_ENOMEM, "dimension %d is too large (%lld > RL_MAX_DIM)", i + 1, (long long)shape[i]);
    if (shape[i] && n > (RL_MAX_DIM / shape[i]))
      return rl_fail(RL_ENOMEM, "tensor of that shape has too many elements");
    n *= shape[i];
  }
  if ((size_t)n > RL_MAX_ALLOC / sizeof(real)) return rl_fail(RL_ENOMEM, "tensor of that shape is too large");
  *numel = n;
  return RL_OK;
}

int rl_expect_matrix(const rl_tensor *t, int64_t rows, int64_t cols, const char *what) {
  if (t->ndim > 2)
    return rl_fail(RL_EINVAL, "%s: expected a 2-D tensor, got %d-D", what, t->ndim);
  int64_t r = rl_rows(t), c = rl_cols(t);
  if ((rows >= 0 && r != rows) || (cols >= 0 && c != cols)) {
    char want_r[32], want_c[32];
    if (rows >= 0) snprintf(want_r, sizeof want_r, "%lld", (long long)rows); else strcpy(want_r, "any");
    if (cols >= 0) snprintf(want_c, sizeof want_c, "%lld", (long long)cols); else strcpy(want_c, "any");
    return rl_fail(RL_EINVAL, "%s: expected %s x %s, got %lld x %lld", what, want_r, want_c, (long long)r,
                   (long long)c);
  }
  return RL_OK;
}

int rl_expect_finite(const real *x, int64_t n, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return rl_fail(RL_EINVAL, "%s: value %lld is not finite (%g)", what, (long long)i, (double)x[i]);
  return RL_OK;
}

void rl_fill(real *x, int64_t n, real v) {
  for (int64_t i = 0; i < n; i++) x[i] = v;
}

void rl_axpy(int64_t n, real a, const real *x, real *y) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

real rl_dot(int64_t n, const real *x, const real *y) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * y[i];
  return (real)s;
}
