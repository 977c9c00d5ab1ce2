/*
** limits.h -- every named limit and default of the library in one place. Each may be overridden at build
** time with -DNAME=value.
*/
#ifndef RL_LIMITS_H
#define RL_LIMITS_H

/* Largest single allocation accepted (bytes): refuses sizes that can only come from a bad shape. */
#ifndef RL_MAX_ALLOC
#define RL_MAX_ALLOC ((size_t)16 << 30)
#endif

/* Largest tensor dimension accepted from users and files. */
#ifndef RL_MAX_DIM
#define RL_MAX_DIM ((int64_t)1 << 40)
#endif

/* Tensors have at most this many dimensions. */
#define RL_MAX_DIMS 4

/* Nesting levels of a ragged batch: sets, groups of sets, groups of groups. */
#define RL_MAX_LEVELS 3

/* Length of the thread-local error message buffer. */
#define RL_ERRMSG_LEN 512

/* Modules have at most this many named parameters. 64 because a composite module lists its parts' parameters
** under its own name: an HROTP of M heads holds up to 8 tensors per ROTP (a0 a1 a2 a3 rho q0.V q0.w p0.U) for each
** head and the top, plus those of g, so 64 fits 6 fully learned heads, the top and a small g. */
#ifndef RL_MAX_PARAMS
#define RL_MAX_PARAMS 64
#endif

/* Added to the denominator of the per-set softmax (attention), as the graph softmax of the reference does. */
#define RL_SOFTMAX_EPS 1e-16

#endif
