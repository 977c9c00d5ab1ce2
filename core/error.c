/*
** error.c -- the thread-local error message and the checked allocators.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "rl.h"

static _Thread_local char errmsg[RL_ERRMSG_LEN];

int rl_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
  return code;
}

const char *rl_error(void) { return errmsg; }

void rl_clear_error(void) { errmsg[0] = '\0'; }

void *rl_malloc(size_t bytes) {
  if (bytes > RL_MAX_ALLOC) {
    rl_fail(RL_ENOMEM, "allocation of %zu bytes exceeds the limit RL_MAX_ALLOC (%zu)", bytes, (size_t)RL_MAX_ALLOC);
    return NULL;
  }
  void *p = malloc(bytes ? bytes : 1);
  if (!p) rl_fail(RL_ENOMEM, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *rl_calloc(size_t count, size_t size) {
  if (size && count > RL_MAX_ALLOC / size) {
    rl_fail(RL_ENOMEM, "allocation of %zu x %zu bytes exceeds the limit RL_MAX_ALLOC", count, size);
    return NULL;
  }
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) rl_fail(RL_ENOMEM, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *rl_realloc(void *old, size_t bytes) {
  if (bytes > RL_MAX_ALLOC) {
    rl_fail(RL_ENOMEM, "allocation of %zu bytes exceeds the limit RL_MAX_ALLOC", bytes);
    return NULL;
  }
  void *p = realloc(old, bytes ? bytes : 1);
  if (!p) rl_fail(RL_ENOMEM, "out of memory allocating %zu bytes", bytes);
  return p;
}

void rl_free(void *p) { free(p); }

int rl_workspace_reserve(rl_workspace *w, size_t bytes) {
  if (w->bytes >= bytes && w->data) return RL_OK;
  void *p = rl_malloc(bytes);
  if (!p) return RL_ENOMEM;
  free(w->data);
  w->data = p;
  w->bytes = bytes;
  return RL_OK;
}

void rl_workspace_free(rl_workspace *w) {
  free(w->data);
  w->data = NULL;
  w->bytes = 0;
}
