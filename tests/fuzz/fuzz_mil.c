/*
** fuzz_mil.c -- libFuzzer target for the MIL text parser and validator (core/data/mil.c, rl_mil_parse). The input
** is split at its first two NUL bytes into data.csv, bagids.csv and labels.csv (a missing part is an empty file;
** the third part may hold NULs). Each part is copied into a buffer of exactly its length, without a terminating NUL,
** so AddressSanitizer catches any read past the end. Errors are fine; a crash, a leak, a hang, undefined behaviour,
** an error message that is not "FILE:..." for one of the three names, a failed parse that leaves memory behind, or
** parsed bags that break the parser's promises (checked below) is a finding and aborts.
**
** Build and run: `make fuzz` (see tests/fuzz/README.md).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/data/mil.h"

#define FINDING(...)                                                                                               \
  do {                                                                                                             \
    fprintf(stderr, "fuzz_mil: " __VA_ARGS__);                                                                     \
    fputc('\n', stderr);                                                                                           \
    abort();                                                                                                       \
  } while (0)

static const char *const names[3] = {"fz/data.csv", "fz/bagids.csv", "fz/labels.csv"};

static void check_bags(const rl_mil *m) {
  if (m->instances < 1 || m->dim < 1 || m->bags < 1 || m->bags > m->instances)
    FINDING("bad counts n=%lld d=%lld B=%lld", (long long)m->instances, (long long)m->dim, (long long)m->bags);
  if (m->offsets[0] != 0 || m->offsets[m->bags] != m->instances) FINDING("offsets do not span the instances");
  int64_t pos = 0;
  for (int64_t b = 0; b < m->bags; b++) {
    if (m->offsets[b + 1] <= m->offsets[b]) FINDING("bag %lld is empty", (long long)b);
    if (m->y[b] != 0 && m->y[b] != 1) FINDING("label of bag %lld is %lld", (long long)b, (long long)m->y[b]);
    pos += m->y[b];
  }
  if (pos != m->positives) FINDING("positives %lld, counted %lld", (long long)m->positives, (long long)pos);
  for (int64_t i = 0; i < m->instances * m->dim; i++)
    if (!isfinite(m->X[i])) FINDING("X[%lld] is not finite", (long long)i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t start[3], len[3];
  size_t pos = 0;
  for (int i = 0; i < 3; i++) {
    start[i] = pos;
    const uint8_t *nul = i < 2 && pos < size ? memchr(data + pos, 0, size - pos) : NULL;
    size_t end = nul ? (size_t)(nul - data) : size;
    len[i] = end - pos;
    pos = nul ? end + 1 : size;
  }
  char *copy[3];
  rl_mil_text text[3];
  for (int i = 0; i < 3; i++) {
    copy[i] = malloc(len[i] ? len[i] : 1);
    if (!copy[i]) FINDING("out of memory in the harness");
    if (len[i]) memcpy(copy[i], data + start[i], len[i]);
    text[i].name = names[i];
    text[i].bytes = copy[i];
    text[i].len = len[i];
  }
  rl_mil m;
  rl_mil_init(&m);
  rl_clear_error();
  if (rl_mil_parse(&m, &text[0], &text[1], &text[2]) == RL_OK) {
    check_bags(&m);
    /* a second parse into a full target is refused and leaves it intact */
    if (rl_mil_parse(&m, &text[0], &text[1], &text[2]) == RL_OK || !m.X) FINDING("parse into a full target");
  } else {
    const char *msg = rl_error();
    int named = 0;
    for (int i = 0; i < 3; i++)
      if (strncmp(msg, names[i], strlen(names[i])) == 0 && msg[strlen(names[i])] == ':') named = 1;
    if (!named) FINDING("message does not start with a file name: '%s'", msg);
    if (m.X || m.offsets || m.y || m.instances || m.bags) FINDING("a failed parse left the target non-empty");
  }
  rl_mil_free(&m);
  rl_mil_free(&m); /* safe twice */
  for (int i = 0; i < 3; i++) free(copy[i]);
  return 0;
}
