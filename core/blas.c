/*
** blas.c -- thin wrappers over OpenBLAS's CBLAS interface.
*/
#include <cblas.h>

#include "blas.h"

void rl_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, real alpha, const real *A, int64_t lda, const real *B,
             int64_t ldb, real beta, real *C, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef RL_DOUBLE
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n,
              (blasint)k, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
#else
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n,
              (blasint)k, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
#endif
}

void rl_gemv(int trans, int64_t m, int64_t n, real alpha, const real *A, int64_t lda, const real *x, real beta,
             real *y) {
  if (m == 0 || n == 0) return;
#ifdef RL_DOUBLE
  cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, alpha, A, (blasint)lda, x, 1,
              beta, y, 1);
#else
  cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, alpha, A, (blasint)lda, x, 1,
              beta, y, 1);
#endif
}

void rl_blas_set_threads(int n) { openblas_set_num_threads(n); }
