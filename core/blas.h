/*
** blas.h -- the one place that picks sgemm or dgemm for `real`. Row-major; trans flags are 0/1.
*/
#ifndef RL_BLAS_H
#define RL_BLAS_H

#include "rl.h"

/* C (m x n) = alpha op(A) op(B) + beta C, with op(A) m x k and op(B) k x n. */
void rl_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, real alpha, const real *A, int64_t lda,
             const real *B, int64_t ldb, real beta, real *C, int64_t ldc);

/* y (m) = alpha op(A) x + beta y, A m x n row-major (op(A) is n x m when trans). */
void rl_gemv(int trans, int64_t m, int64_t n, real alpha, const real *A, int64_t lda, const real *x, real beta,
             real *y);

/* Number of BLAS threads (1 inside our own OpenMP regions). */
void rl_blas_set_threads(int n);

#endif
