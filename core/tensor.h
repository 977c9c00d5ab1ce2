/*
** tensor.h -- dense row-major arrays of `real`. A tensor is a view: it never owns its storage; whoever allocated
** the data (a Lua userdata, a module, a dataset) frees it.
*/
#ifndef RL_TENSOR_H
#define RL_TENSOR_H

#include "limits.h"
#include "rl.h"

typedef struct rl_tensor {
  real *data;
  int ndim;                     /* 1..RL_MAX_DIMS */
  int64_t shape[RL_MAX_DIMS];
  int64_t numel;
} rl_tensor;

/* A rows x cols view of data. */
rl_tensor rl_matrix(real *data, int64_t rows, int64_t cols);
/* A 1-D view of n values. */
rl_tensor rl_vector(real *data, int64_t n);

/* Modules see every tensor as a matrix: a 1-D tensor is one row. */
static inline int64_t rl_rows(const rl_tensor *t) { return t->ndim == 1 ? 1 : t->shape[0]; }
static inline int64_t rl_cols(const rl_tensor *t) {
  return t->ndim == 1 ? t->shape[0] : (t->shape[0] ? t->numel / t->shape[0] : 0);
}

/* Validates ndim/shape and sets numel (0 on success, RL_EINVAL / RL_ENOMEM on bad or absurd shapes). */
int rl_shape_check(int ndim, const int64_t *shape, int64_t *numel);

/* Fails with a message naming `what` unless t is rows x cols (-1 matches any). */
int rl_expect_matrix(const rl_tensor *t, int64_t rows, int64_t cols, const char *what);
/* Fails unless every value is finite. */
int rl_expect_finite(const real *x, int64_t n, const char *what);

void rl_fill(real *x, int64_t n, real v);
void rl_axpy(int64_t n, real a, const real *x, real *y); /* y += a x */
real rl_dot(int64_t n, const real *x, const real *y);

#endif
