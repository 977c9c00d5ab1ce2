/*
** rl.h -- the scalar type, status codes and error reporting shared by all of core/.
** core/ never includes lua.h; callers fetch the message of a failed call with rl_error().
*/
#ifndef RL_H
#define RL_H

#include <stddef.h>
#include <stdint.h>

/* The one scalar typedef: float by default, double in the gradient-check build. */
#ifdef RL_DOUBLE
typedef double real;
#define RL_REAL_NAME "double"
#else
typedef float real;
#define RL_REAL_NAME "float"
#endif

/* Status codes: 0 is success; every failing call also records a message. */
enum {
  RL_OK = 0,
  RL_EINVAL = 1, /* bad argument: shape, range, non-finite value, unknown option */
  RL_ENOMEM = 2, /* allocation failed or a size limit was exceeded */
  RL_EIO = 3,    /* file or database error */
  RL_ESTATE = 4  /* call out of order, e.g. backward before forward */
};

/* Records a printf-style message (thread-local, like errno) and returns code. */
int rl_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The message of the last failing call on this thread ("" if none). */
const char *rl_error(void);
void rl_clear_error(void);

/* Allocation that records a message on failure and refuses absurd sizes. */
void *rl_malloc(size_t bytes);
void *rl_calloc(size_t count, size_t size);
void *rl_realloc(void *p, size_t bytes);
void rl_free(void *p);

/* A growable scratch buffer owned by a module: grown only when too small, never per iteration. */
typedef struct rl_workspace {
  void *data;
  size_t bytes;
} rl_workspace;
int rl_workspace_reserve(rl_workspace *w, size_t bytes); /* contents are not kept */
void rl_workspace_free(rl_workspace *w);

#endif
