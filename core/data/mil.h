/*
** mil.h -- the multiple-instance-learning text layout of ../shared/data (README sections 1-2) read into bags:
**
**   data.csv    feature-major: d lines, each n TAB-separated decimal numbers (line f = feature f of every instance)
**   bagids.csv  n lines: the 1-based bag id of instance j; bags are contiguous and numbered 1..B in order
**   labels.csv  n lines of 0/1: the bag label copied to each instance (constant inside a bag)
**
** The parser takes buffers (not NUL-terminated; any bytes) so it can be fuzzed; it never reads past a buffer and
** fails on malformed input with an rl_fail message "FILE:LINE:COLUMN: problem" (1-based line and column, the column
** counted in bytes from the start of the line). Line ends may be LF or CRLF; a final line end is optional. Nothing
** is standardised here: the values are kept as written (rounded to `real`).
*/
#ifndef RL_MIL_H
#define RL_MIL_H

#include "../rl.h"

/* Longest number (bytes) accepted in a field: longer fields are refused rather than truncated. */
#define RL_MIL_MAX_FIELD 64
/* Largest text file read (bytes). */
#define RL_MIL_MAX_FILE ((size_t)1 << 31)

/* The three files' names inside a MIL directory. */
#define RL_MIL_DATA "data.csv"
#define RL_MIL_BAGIDS "bagids.csv"
#define RL_MIL_LABELS "labels.csv"

/* One input text: a name used in messages (e.g. the path) and its bytes. */
typedef struct rl_mil_text {
  const char *name;
  const char *bytes;
  size_t len;
} rl_mil_text;

/* The bags. rl_mil_init makes it empty; rl_mil_free releases it and is safe to call twice. */
typedef struct rl_mil {
  int64_t instances; /* n */
  int64_t dim;       /* d */
  int64_t bags;      /* B */
  int64_t positives; /* bags with label 1 */
  real *X;           /* n x d, instance-major (the transpose of data.csv) */
  int64_t *offsets;  /* B + 1: bag b is instances offsets[b] .. offsets[b+1]-1 */
  int64_t *y;        /* B labels, 0 or 1 */
} rl_mil;

void rl_mil_init(rl_mil *m);
void rl_mil_free(rl_mil *m);

/* Parses and cross-checks the three texts into m (which must be empty). On failure m stays empty. */
int rl_mil_parse(rl_mil *m, const rl_mil_text *data, const rl_mil_text *bagids, const rl_mil_text *labels);

/* Reads DIR/data.csv, DIR/bagids.csv and DIR/labels.csv and parses them (messages name the paths). */
int rl_mil_read_dir(rl_mil *m, const char *dir);

/* Reads a whole file into a new buffer (*bytes, free with rl_free; *len bytes, plus a NUL not counted). */
int rl_mil_read_file(const char *path, char **bytes, size_t *len);

#endif
