/*
** mil.c -- parser and validator of the MIL text layout (see mil.h). Every byte of the input is untrusted: lines are
** walked with explicit bounds, each number is copied into a small NUL-terminated buffer before strtod sees it, and
** every problem becomes an "FILE:LINE:COLUMN: ..." message.
*/
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../limits.h"
#include "mil.h"

/* Longest path built by rl_mil_read_dir. */
#define MIL_PATH_LEN 4096
/* Bytes of a bad field quoted in a message. */
#define MIL_QUOTE_LEN 24
/* Bytes read per fread call. */
#define MIL_READ_CHUNK ((size_t)1 << 16)
/* Largest magnitude a value may have to be stored in `real`. */
#define MIL_REAL_LIMIT (sizeof(real) == sizeof(float) ? (double)FLT_MAX : DBL_MAX)
/* Bag ids have at most this many digits (fits int64). */
#define MIL_MAX_ID_DIGITS 18

void rl_mil_init(rl_mil *m) { memset(m, 0, sizeof *m); }

void rl_mil_free(rl_mil *m) {
  rl_free(m->X);
  rl_free(m->offsets);
  rl_free(m->y);
  rl_mil_init(m);
}

/* ---------------------------------------------------------------- lines */

/* A walk over the lines of one text. */
typedef struct lines {
  const rl_mil_text *t;
  size_t pos;      /* start of the next line */
  int64_t number;  /* 1-based number of the current line */
  const char *s;   /* current line (without its LF or CRLF) */
  size_t len;
} lines;

static void lines_start(lines *w, const rl_mil_text *t) {
  memset(w, 0, sizeof *w);
  w->t = t;
}

/* Advances to the next line; 0 at the end of the text. A final line end does not start an empty line. */
static int lines_next(lines *w) {
  const rl_mil_text *t = w->t;
  if (w->pos >= t->len) return 0;
  const char *start = t->bytes + w->pos;
  const char *nl = memchr(start, '\n', t->len - w->pos);
  size_t len = nl ? (size_t)(nl - start) : t->len - w->pos;
  w->pos += len + (nl ? 1 : 0);
  if (len > 0 && start[len - 1] == '\r') len--;
  w->s = start;
  w->len = len;
  w->number++;
  return 1;
}

/* Number of lines (as lines_next counts them). */
static int64_t count_lines(const rl_mil_text *t) {
  lines w;
  lines_start(&w, t);
  while (lines_next(&w)) {
  }
  return w.number;
}

/* Copies up to MIL_QUOTE_LEN bytes of s for a message, printable ASCII only. */
static const char *quote(const char *s, size_t len, char *out) {
  size_t n = len < MIL_QUOTE_LEN ? len : MIL_QUOTE_LEN, k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[k++] = (c >= 32 && c < 127) ? (char)c : '?';
  }
  if (n < len) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = 0;
  return out;
}

static int fail_at(const lines *w, size_t col, const char *what) {
  return rl_fail(RL_EINVAL, "%s:%lld:%zu: %s", w->t->name, (long long)w->number, col + 1, what);
}

/* ---------------------------------------------------------------- numbers */

/* 1 if s[0..len) is a plain decimal number: [+-] digits [. digits] [e [+-] digits], at least one mantissa digit. */
static int is_decimal(const char *s, size_t len) {
  size_t i = 0, digits = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) i++;
  while (i < len && s[i] >= '0' && s[i] <= '9') i++, digits++;
  if (i < len && s[i] == '.') {
    i++;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++, digits++;
  }
  if (!digits) return 0;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) i++;
    size_t exp = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++, exp++;
    if (!exp) return 0;
  }
  return i == len;
}

/* Parses the field w->s[col .. col+len) as a finite number that fits `real`. */
static int parse_value(const lines *w, size_t col, size_t len, real *out) {
  char buf[RL_MIL_MAX_FIELD + 1], q[MIL_QUOTE_LEN + 4], msg[128];
  const char *s = w->s + col;
  if (len == 0) return fail_at(w, col, "empty value (two TABs in a row, or a TAB at the start or end of the line)");
  if (len > RL_MIL_MAX_FIELD) {
    snprintf(msg, sizeof msg, "value '%s' is longer than %d bytes", quote(s, len, q), RL_MIL_MAX_FIELD);
    return fail_at(w, col, msg);
  }
  if (!is_decimal(s, len)) {
    snprintf(msg, sizeof msg, "not a number: '%s' (expected a decimal such as 12, -0.5 or 1e-05)",
             quote(s, len, q));
    return fail_at(w, col, msg);
  }
  memcpy(buf, s, len);
  buf[len] = 0;
  double v = strtod(buf, NULL);
  if (!isfinite(v) || fabs(v) > MIL_REAL_LIMIT) {
    snprintf(msg, sizeof msg, "value '%s' is out of range for %s", quote(s, len, q), RL_REAL_NAME);
    return fail_at(w, col, msg);
  }
  *out = (real)v;
  return RL_OK;
}

/* Parses the whole line as an integer of at most MIL_MAX_ID_DIGITS digits (no sign); `what` names it. */
static int parse_count(const lines *w, const char *what, int64_t *out) {
  char q[MIL_QUOTE_LEN + 4], msg[160];
  if (w->len == 0) {
    snprintf(msg, sizeof msg, "empty line (expected a %s)", what);
    return fail_at(w, 0, msg);
  }
  int64_t v = 0;
  for (size_t i = 0; i < w->len; i++) {
    char c = w->s[i];
    if (c < '0' || c > '9' || i >= MIL_MAX_ID_DIGITS) {
      snprintf(msg, sizeof msg, "%s '%s' is not a non-negative integer%s", what, quote(w->s, w->len, q),
               i >= MIL_MAX_ID_DIGITS ? " of at most 18 digits" : "");
      return fail_at(w, c < '0' || c > '9' ? i : 0, msg);
    }
    v = v * 10 + (c - '0');
  }
  *out = v;
  return RL_OK;
}

/* ---------------------------------------------------------------- the three files */

/* One pass over data.csv (d lines of n values each): checks every line and value; stores value (j, f) at
** X[j * d + f] when X is not NULL. */
static int data_pass(const rl_mil_text *t, int64_t n, int64_t d, real *X) {
  lines w;
  char msg[160];
  real scratch;
  lines_start(&w, t);
  for (int64_t f = 0; lines_next(&w); f++) {
    if (w.len == 0) {
      snprintf(msg, sizeof msg, "empty line (expected %lld TAB-separated values, one per instance, as line 1)",
               (long long)n);
      return fail_at(&w, 0, msg);
    }
    size_t col = 0;
    int64_t j = 0;
    for (;;) {
      const char *tab = memchr(w.s + col, '\t', w.len - col);
      size_t flen = tab ? (size_t)(tab - (w.s + col)) : w.len - col;
      if (j >= n) {
        snprintf(msg, sizeof msg, "ragged line: more than %lld values (line 1 has %lld, one per instance)",
                 (long long)n, (long long)n);
        return fail_at(&w, col, msg);
      }
      if (parse_value(&w, col, flen, X ? &X[j * d + f] : &scratch)) return RL_EINVAL;
      j++;
      if (!tab) break;
      col += flen + 1;
    }
    if (j < n) {
      snprintf(msg, sizeof msg, "ragged line: %lld values, expected %lld (as line 1, one per instance)",
               (long long)j, (long long)n);
      return fail_at(&w, w.len, msg);
    }
  }
  return RL_OK;
}

/* data.csv -> X (n x d, instance-major, allocated here). The whole file is validated before X is allocated, so
** the allocation is bounded by the size of a valid input (every value takes at least two bytes). */
static int parse_data(const rl_mil_text *t, rl_mil *m) {
  lines w;
  if (t->len == 0)
    return rl_fail(RL_EINVAL, "%s: empty file (expected one line per feature, each with one TAB-separated value "
                   "per instance)", t->name);
  int64_t d = count_lines(t), n = 1;
  lines_start(&w, t);
  lines_next(&w);
  for (size_t i = 0; i < w.len; i++) n += w.s[i] == '\t';
  int rc = data_pass(t, n, d, NULL);
  if (rc) return rc;
  if ((uint64_t)n > RL_MAX_ALLOC / sizeof(real) / (uint64_t)d)
    return rl_fail(RL_ENOMEM, "%s: %lld features x %lld instances is too large", t->name, (long long)d,
                   (long long)n);
  real *X = rl_malloc((size_t)n * (size_t)d * sizeof(real));
  if (!X) return RL_ENOMEM;
  rc = data_pass(t, n, d, X);
  if (rc) {
    rl_free(X);
    return rc;
  }
  m->X = X;
  m->dim = d;
  m->instances = n;
  return RL_OK;
}

/* bagids.csv: contiguous 1-based ids -> offsets (allocated here), *nlines instances. */
static int parse_bagids(const rl_mil_text *t, rl_mil *m, int64_t *nlines) {
  lines w;
  char msg[200];
  if (t->len == 0) return rl_fail(RL_EINVAL, "%s: empty file (expected one bag id per instance)", t->name);
  int64_t n = count_lines(t);
  int64_t *off = rl_malloc((size_t)(n + 1) * sizeof(int64_t));
  if (!off) return RL_ENOMEM;
  int64_t bag = 0; /* the current 1-based id; 0 before the first line */
  lines_start(&w, t);
  while (lines_next(&w)) {
    int64_t id = 0;
    if (parse_count(&w, "bag id", &id)) {
      rl_free(off);
      return RL_EINVAL;
    }
    if (id == 0)
      snprintf(msg, sizeof msg, "bag id 0: ids are 1-based (bags are numbered 1..B in order of appearance)");
    else if (id == bag)
      continue;
    else if (bag == 0 && id != 1)
      snprintf(msg, sizeof msg, "first bag id is %lld, expected 1 (bags are numbered 1..B in order of appearance)",
               (long long)id);
    else if (id > bag + 1)
      snprintf(msg, sizeof msg, "bag id %lld follows bag %lld: ids must be contiguous (no bag %lld)", (long long)id,
               (long long)bag, (long long)(bag + 1));
    else if (id < bag)
      snprintf(msg, sizeof msg, "bag id %lld after bag %lld: a bag's instances must be on consecutive lines and "
               "bags numbered in order of appearance", (long long)id, (long long)bag);
    else {
      off[bag] = w.number - 1; /* bag `id` starts at this instance */
      bag = id;
      continue;
    }
    rl_free(off);
    return fail_at(&w, 0, msg);
  }
  off[bag] = n;
  m->offsets = off;
  m->bags = bag;
  *nlines = n;
  return RL_OK;
}

/* labels.csv: 0/1 per instance, constant inside each bag of m->offsets -> y (allocated here). */
static int parse_labels(const rl_mil_text *t, const rl_mil_text *bagids, rl_mil *m) {
  lines w;
  char msg[240];
  int64_t *y = rl_malloc((size_t)m->bags * sizeof(int64_t));
  if (!y) return RL_ENOMEM;
  int64_t b = 0;
  lines_start(&w, t);
  while (lines_next(&w)) {
    int64_t j = w.number - 1;
    if (w.len != 1 || (w.s[0] != '0' && w.s[0] != '1')) {
      char q[MIL_QUOTE_LEN + 4];
      if (w.len == 0) snprintf(msg, sizeof msg, "empty line (expected a label, 0 or 1)");
      else snprintf(msg, sizeof msg, "label '%s' is not 0 or 1", quote(w.s, w.len, q));
      rl_free(y);
      return fail_at(&w, 0, msg);
    }
    int64_t v = w.s[0] - '0';
    while (j >= m->offsets[b + 1]) b++;
    if (j == m->offsets[b]) {
      y[b] = v;
    } else if (v != y[b]) {
      snprintf(msg, sizeof msg, "label %lld differs from label %lld on line %lld, yet both instances are in bag %lld "
               "(%s lines %lld..%lld): labels must be constant inside a bag", (long long)v, (long long)y[b],
               (long long)(m->offsets[b] + 1), (long long)(b + 1), bagids->name, (long long)(m->offsets[b] + 1),
               (long long)m->offsets[b + 1]);
      rl_free(y);
      return fail_at(&w, 0, msg);
    }
  }
  m->y = y;
  m->positives = 0;
  for (b = 0; b < m->bags; b++) m->positives += y[b];
  return RL_OK;
}

int rl_mil_parse(rl_mil *m, const rl_mil_text *data, const rl_mil_text *bagids, const rl_mil_text *labels) {
  if (!m || !data || !bagids || !labels || (!data->bytes && data->len) || (!bagids->bytes && bagids->len) ||
      (!labels->bytes && labels->len))
    return rl_fail(RL_EINVAL, "mil: NULL argument");
  if (m->X || m->offsets || m->y) return rl_fail(RL_EINVAL, "mil: the target is not empty");
  int64_t nb;
  int rc = parse_data(data, m);
  if (!rc) rc = parse_bagids(bagids, m, &nb);
  if (!rc && nb != m->instances)
    rc = rl_fail(RL_EINVAL, "%s: %lld lines (instances), but %s has %lld values per line (instances): the counts "
                 "must agree", bagids->name, (long long)nb, data->name, (long long)m->instances);
  if (!rc) {
    if (labels->len == 0) {
      rc = rl_fail(RL_EINVAL, "%s: empty file (expected one 0/1 label per instance)", labels->name);
    } else {
      int64_t nl = count_lines(labels);
      if (nl != m->instances)
        rc = rl_fail(RL_EINVAL, "%s: %lld lines (instances), but %s has %lld and %s %lld values per line: the "
                     "counts must agree", labels->name, (long long)nl, bagids->name, (long long)nb, data->name,
                     (long long)m->instances);
    }
  }
  if (!rc) rc = parse_labels(labels, bagids, m);
  if (rc) rl_mil_free(m);
  return rc;
}

/* ---------------------------------------------------------------- files */

int rl_mil_read_file(const char *path, char **bytes, size_t *len) {
  *bytes = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return rl_fail(RL_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = MIL_READ_CHUNK, n = 0;
  char *buf = rl_malloc(cap + 1);
  if (!buf) {
    fclose(f);
    return RL_ENOMEM;
  }
  for (;;) {
    if (n == cap) {
      if (cap >= RL_MIL_MAX_FILE) {
        rl_free(buf);
        fclose(f);
        return rl_fail(RL_ENOMEM, "%s: larger than %zu bytes", path, (size_t)RL_MIL_MAX_FILE);
      }
      char *nb = rl_realloc(buf, 2 * cap + 1);
      if (!nb) {
        rl_free(buf);
        fclose(f);
        return RL_ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    size_t want = cap - n < MIL_READ_CHUNK ? cap - n : MIL_READ_CHUNK;
    size_t got = fread(buf + n, 1, want, f);
    n += got;
    if (got < want) {
      if (ferror(f)) {
        int e = errno;
        rl_free(buf);
        fclose(f);
        return rl_fail(RL_EIO, "%s: read error: %s", path, strerror(e));
      }
      break;
    }
  }
  fclose(f);
  buf[n] = 0;
  *bytes = buf;
  *len = n;
  return RL_OK;
}

int rl_mil_read_dir(rl_mil *m, const char *dir) {
  static const char *const names[3] = {RL_MIL_DATA, RL_MIL_BAGIDS, RL_MIL_LABELS};
  char path[3][MIL_PATH_LEN];
  rl_mil_text text[3];
  char *bytes[3] = {NULL, NULL, NULL};
  int rc = RL_OK;
  if (!dir || !*dir) return rl_fail(RL_EINVAL, "mil: expected a directory name");
  for (int i = 0; i < 3 && !rc; i++) {
    int k = snprintf(path[i], MIL_PATH_LEN, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
    if (k < 0 || k >= MIL_PATH_LEN) rc = rl_fail(RL_EINVAL, "%s: directory name too long", dir);
    else rc = rl_mil_read_file(path[i], &bytes[i], &text[i].len);
    text[i].name = path[i];
    text[i].bytes = bytes[i];
  }
  if (!rc) rc = rl_mil_parse(m, &text[0], &text[1], &text[2]);
  for (int i = 0; i < 3; i++) rl_free(bytes[i]);
  return rc;
}
