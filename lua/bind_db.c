/*
** bind_db.c -- a thin SQLite 3 binding (core.sqlite_open, re-exported as rl.sqlite.open) for the results database.
**   local db = rl.sqlite.open(path, {busy_timeout_ms = 10000, readonly = false, create = true})
**   db:exec(sql)                      one or more statements, results ignored
**   db:query(sql, ...) -> {row, ...}  one statement, ? parameters bound from ...; rows are tables keyed by column
**   for row in db:rows(sql, ...) do   the same as an iterator (the statement is finalized on break, via __close)
**   db:prepare(sql) -> st;  st:bind(...); st:step() -> row or nil; st:reset(); st:finalize()
**   st:columns() -> {name, ...}       the result columns in order (rows are keyed by name, NULLs absent)
**   db:last_insert_id(); db:changes(); db:autocommit(); db:close()
** Values: Lua integer -> INTEGER, float -> REAL (SQLite stores NaN as NULL; +-Inf round-trip), string -> TEXT,
** boolean -> INTEGER 0/1, nil -> NULL, {blob = string} -> BLOB. Columns come back as integer, float, string or
** absent (NULL). Errors are Lua errors carrying SQLite's message and the first characters of the SQL.
** Lifetime: a statement keeps its connection alive (uservalue); closing a connection finalizes its statements
** first (they are linked in a list). Close and finalize are safe to call twice and run from __gc and __close.
*/
#include <ctype.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"

#define RLB_SQLITE "rotlab.sqlite"
#define RLB_SQLITE_STMT "rotlab.sqlite.stmt"

/* Busy timeout (milliseconds) when the caller gives none: how long a writer waits for another's lock. */
#define RLB_SQLITE_BUSY_TIMEOUT_MS 10000
/* Characters of the SQL quoted in error messages. */
#define RLB_SQLITE_SNIPPET 60
/* Length of a formatted error message. */
#define RLB_SQLITE_ERRLEN 512

typedef struct rlb_stmt rlb_stmt;

typedef struct rlb_sqlite {
  sqlite3 *db;      /* NULL once closed */
  rlb_stmt *stmts;  /* live statements, finalized before the connection closes */
} rlb_sqlite;

struct rlb_stmt {
  sqlite3_stmt *st; /* NULL once finalized */
  rlb_sqlite *conn; /* NULL once finalized */
  rlb_stmt *prev, *next;
};

/* ---------------------------------------------------------------- errors */

/* Formats "sqlite: WHAT: MESSAGE (in: SQL...)" into buf, the SQL's whitespace collapsed. Makes no Lua call, so
** it can run while SQLite resources are still held; the caller releases them and then raises. */
static void format_error(char *buf, size_t n, const char *what, const char *msg, const char *sql) {
  char snippet[RLB_SQLITE_SNIPPET + 4];
  size_t k = 0;
  const char *p = sql ? sql : "";
  for (; *p && k < RLB_SQLITE_SNIPPET; p++) {
    if (isspace((unsigned char)*p)) {
      if (k > 0 && snippet[k - 1] != ' ') snippet[k++] = ' ';
      continue;
    }
    snippet[k++] = *p;
  }
  while (*p && isspace((unsigned char)*p)) p++;
  if (*p) { /* truncated */
    memcpy(snippet + k, "...", 3);
    k += 3;
  }
  while (k > 0 && snippet[k - 1] == ' ') k--;
  snippet[k] = '\0';
  if (k) snprintf(buf, n, "sqlite: %s: %s (in: %s)", what, msg, snippet);
  else snprintf(buf, n, "sqlite: %s: %s", what, msg);
}

static int raise_msg(lua_State *L, const char *buf) { return luaL_error(L, "%s", buf); }

/* ---------------------------------------------------------------- connection handles */

static rlb_sqlite *check_conn(lua_State *L, int idx) {
  rlb_sqlite *c = luaL_checkudata(L, idx, RLB_SQLITE);
  if (c->db == NULL) luaL_error(L, "sqlite: the database is closed");
  return c;
}

static void stmt_unlink(rlb_stmt *s) {
  if (s->conn) {
    if (s->prev) s->prev->next = s->next;
    else s->conn->stmts = s->next;
    if (s->next) s->next->prev = s->prev;
  }
  s->prev = s->next = NULL;
  s->conn = NULL;
}

/* Finalizes a statement; safe to call twice. */
static void stmt_release(rlb_stmt *s) {
  if (s->st) sqlite3_finalize(s->st);
  s->st = NULL;
  stmt_unlink(s);
}

/* Finalizes every statement, then closes; safe to call twice. */
static void conn_release(rlb_sqlite *c) {
  while (c->stmts) stmt_release(c->stmts);
  if (c->db) sqlite3_close_v2(c->db);
  c->db = NULL;
}

/* Pushes a new statement handle for sql on connection at conn_idx (the handle exists, empty, before SQLite
** allocates anything, so an error never leaks). *tail receives the unparsed rest of sql. */
static rlb_stmt *push_stmt(lua_State *L, int conn_idx, const char *sql, const char **tail, const char *what) {
  conn_idx = lua_absindex(L, conn_idx);
  rlb_sqlite *c = check_conn(L, conn_idx);
  rlb_stmt *s = lua_newuserdatauv(L, sizeof(rlb_stmt), 1);
  s->st = NULL;
  s->conn = NULL;
  s->prev = s->next = NULL;
  luaL_setmetatable(L, RLB_SQLITE_STMT);
  lua_pushvalue(L, conn_idx);
  lua_setiuservalue(L, -2, 1);
  int rc = sqlite3_prepare_v2(c->db, sql, -1, &s->st, tail);
  if (rc != SQLITE_OK) {
    char buf[RLB_SQLITE_ERRLEN];
    format_error(buf, sizeof buf, what, sqlite3_errmsg(c->db), sql);
    stmt_release(s);
    raise_msg(L, buf);
  }
  if (s->st == NULL) luaL_error(L, "sqlite: %s: no SQL statement in '%s'", what, sql);
  s->conn = c;
  s->next = c->stmts;
  if (c->stmts) c->stmts->prev = s;
  c->stmts = s;
  return s;
}

static rlb_stmt *check_stmt(lua_State *L, int idx) {
  rlb_stmt *s = luaL_checkudata(L, idx, RLB_SQLITE_STMT);
  if (s->st == NULL) luaL_error(L, "sqlite: the statement is finalized (or its database closed)");
  return s;
}

/* Raises the connection's current error for statement s; if finalize, releases s first, else resets it. */
static int stmt_error(lua_State *L, rlb_stmt *s, const char *what, int finalize) {
  char buf[RLB_SQLITE_ERRLEN];
  format_error(buf, sizeof buf, what, sqlite3_errmsg(s->conn->db), sqlite3_sql(s->st));
  if (finalize) stmt_release(s);
  else sqlite3_reset(s->st);
  return raise_msg(L, buf);
}

/* Binds the Lua values at first..first+n-1 to the statement's ? parameters (after clearing old bindings). */
static void bind_values(lua_State *L, rlb_stmt *s, int first, int n, const char *what) {
  sqlite3_stmt *st = s->st;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  int want = sqlite3_bind_parameter_count(st);
  if (n != want) luaL_error(L, "sqlite: %s: the SQL has %d parameter(s), got %d value(s)", what, want, n);
  for (int i = 0; i < n; i++) {
    int idx = first + i, rc;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = sqlite3_bind_null(st, i + 1); break;
    case LUA_TBOOLEAN: rc = sqlite3_bind_int(st, i + 1, lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) rc = sqlite3_bind_int64(st, i + 1, (sqlite3_int64)lua_tointeger(L, idx));
      else rc = sqlite3_bind_double(st, i + 1, (double)lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *v = lua_tolstring(L, idx, &len);
      rc = sqlite3_bind_text64(st, i + 1, v, (sqlite3_uint64)len, SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    }
    case LUA_TTABLE: {
      lua_getfield(L, idx, "blob");
      size_t len;
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (v == NULL) luaL_argerror(L, idx, "expected number, string, boolean, nil or {blob = string}, got table");
      rc = sqlite3_bind_blob64(st, i + 1, v, (sqlite3_uint64)len, SQLITE_TRANSIENT);
      lua_pop(L, 1);
      break;
    }
    default:
      luaL_argerror(L, idx, lua_pushfstring(L, "expected number, string, boolean, nil or {blob = string}, got %s",
                                            luaL_typename(L, idx)));
      return;
    }
    if (rc != SQLITE_OK) stmt_error(L, s, what, 0);
  }
}

/* Pushes the current row as a table keyed by column name (NULL columns are absent). */
static void push_row(lua_State *L, sqlite3_stmt *st) {
  int n = sqlite3_column_count(st);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, i)); break;
    case SQLITE_FLOAT: lua_pushnumber(L, (lua_Number)sqlite3_column_double(st, i)); break;
    case SQLITE_TEXT:
      lua_pushlstring(L, (const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
      break;
    case SQLITE_BLOB: {
      const void *p = sqlite3_column_blob(st, i);
      lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(st, i));
      break;
    }
    default: continue; /* NULL */
    }
    lua_setfield(L, -2, sqlite3_column_name(st, i));
  }
}

/* Refuses SQL text with a second statement after the first (comments and blanks are fine). */
static void check_single(lua_State *L, rlb_stmt *s, const char *tail, const char *what) {
  if (tail == NULL || *tail == '\0') return;
  sqlite3_stmt *extra = NULL;
  const char *rest = NULL;
  int rc = sqlite3_prepare_v2(s->conn->db, tail, -1, &extra, &rest);
  int more = rc != SQLITE_OK || extra != NULL;
  sqlite3_finalize(extra);
  if (more) {
    stmt_release(s);
    luaL_error(L, "sqlite: %s: expected one SQL statement (use exec for several)", what);
  }
}

/* ---------------------------------------------------------------- connection methods */

static int l_sqlite_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const known[] = {"busy_timeout_ms", "readonly", "create", NULL};
  rlb_check_options(L, 2, "sqlite.open", known);
  lua_Integer timeout = rlb_opt_integer(L, 2, "busy_timeout_ms", RLB_SQLITE_BUSY_TIMEOUT_MS);
  luaL_argcheck(L, timeout >= 0 && timeout <= 0x7fffffff, 2, "busy_timeout_ms must be in 0..2^31-1");
  int readonly = rlb_opt_boolean(L, 2, "readonly", 0);
  int create = rlb_opt_boolean(L, 2, "create", 1);
  rlb_sqlite *c = lua_newuserdatauv(L, sizeof(rlb_sqlite), 0);
  c->db = NULL;
  c->stmts = NULL;
  luaL_setmetatable(L, RLB_SQLITE);
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
  if (rc != SQLITE_OK) {
    char buf[RLB_SQLITE_ERRLEN];
    snprintf(buf, sizeof buf, "sqlite: cannot open '%s': %s", path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    conn_release(c);
    return raise_msg(L, buf);
  }
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, (int)timeout);
  return 1;
}

static int c_exec(lua_State *L) {
  rlb_sqlite *c = check_conn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  char *err = NULL;
  if (sqlite3_exec(c->db, sql, NULL, NULL, &err) != SQLITE_OK) {
    char buf[RLB_SQLITE_ERRLEN];
    format_error(buf, sizeof buf, "exec", err ? err : sqlite3_errmsg(c->db), sql);
    sqlite3_free(err);
    return raise_msg(L, buf);
  }
  return 0;
}

static int c_query(lua_State *L) {
  check_conn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  int nargs = lua_gettop(L) - 2;
  const char *tail = NULL;
  rlb_stmt *s = push_stmt(L, 1, sql, &tail, "query");
  int sidx = lua_gettop(L);
  check_single(L, s, tail, "query");
  bind_values(L, s, 3, nargs, "query");
  lua_newtable(L);
  lua_Integer n = 0;
  for (;;) {
    int rc = sqlite3_step(s->st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return stmt_error(L, s, "query", 1);
    push_row(L, s->st);
    lua_rawseti(L, -2, ++n);
  }
  stmt_release(s);
  lua_remove(L, sidx);
  return 1;
}

/* Iterator of db:rows: upvalue 1 is the statement; finalizes it when the rows run out. */
static int rows_next(lua_State *L) {
  rlb_stmt *s = luaL_checkudata(L, lua_upvalueindex(1), RLB_SQLITE_STMT);
  if (s->st == NULL) return 0;
  int rc = sqlite3_step(s->st);
  if (rc == SQLITE_ROW) {
    push_row(L, s->st);
    return 1;
  }
  if (rc != SQLITE_DONE) return stmt_error(L, s, "rows", 1);
  stmt_release(s);
  return 0;
}

/* for row in db:rows(sql, ...) -- returns iterator, nil, nil, statement (the to-be-closed value) */
static int c_rows(lua_State *L) {
  check_conn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  int nargs = lua_gettop(L) - 2;
  const char *tail = NULL;
  rlb_stmt *s = push_stmt(L, 1, sql, &tail, "rows");
  int sidx = lua_gettop(L);
  check_single(L, s, tail, "rows");
  bind_values(L, s, 3, nargs, "rows");
  lua_pushvalue(L, sidx);
  lua_pushcclosure(L, rows_next, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, sidx);
  return 4;
}

static int c_prepare(lua_State *L) {
  check_conn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  const char *tail = NULL;
  rlb_stmt *s = push_stmt(L, 1, sql, &tail, "prepare");
  check_single(L, s, tail, "prepare");
  return 1;
}

static int c_last_insert_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(check_conn(L, 1)->db));
  return 1;
}

static int c_changes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sqlite3_changes64(check_conn(L, 1)->db));
  return 1;
}

/* true when no transaction is open */
static int c_autocommit(lua_State *L) {
  lua_pushboolean(L, sqlite3_get_autocommit(check_conn(L, 1)->db));
  return 1;
}

static int c_close(lua_State *L) {
  conn_release(luaL_checkudata(L, 1, RLB_SQLITE));
  return 0;
}

static int c_tostring(lua_State *L) {
  rlb_sqlite *c = luaL_checkudata(L, 1, RLB_SQLITE);
  if (c->db == NULL) lua_pushstring(L, "sqlite database (closed)");
  else {
    const char *file = sqlite3_db_filename(c->db, "main");
    lua_pushfstring(L, "sqlite database (%s)", file && *file ? file : ":memory:");
  }
  return 1;
}

/* ---------------------------------------------------------------- statement methods */

static int s_bind(lua_State *L) {
  rlb_stmt *s = check_stmt(L, 1);
  bind_values(L, s, 2, lua_gettop(L) - 1, "bind");
  lua_settop(L, 1);
  return 1;
}

/* st:step() -> the row as a table, or nil when the statement is done */
static int s_step(lua_State *L) {
  rlb_stmt *s = check_stmt(L, 1);
  int rc = sqlite3_step(s->st);
  if (rc == SQLITE_ROW) {
    push_row(L, s->st);
    return 1;
  }
  if (rc != SQLITE_DONE) return stmt_error(L, s, "step", 0);
  return 0;
}

static int s_reset(lua_State *L) {
  rlb_stmt *s = check_stmt(L, 1);
  sqlite3_reset(s->st); /* its status repeats the last step's, already reported */
  lua_settop(L, 1);
  return 1;
}

static int s_columns(lua_State *L) {
  rlb_stmt *s = check_stmt(L, 1);
  int n = sqlite3_column_count(s->st);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, sqlite3_column_name(s->st, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int s_finalize(lua_State *L) {
  stmt_release(luaL_checkudata(L, 1, RLB_SQLITE_STMT));
  return 0;
}

static int s_tostring(lua_State *L) {
  rlb_stmt *s = luaL_checkudata(L, 1, RLB_SQLITE_STMT);
  if (s->st == NULL) lua_pushstring(L, "sqlite statement (finalized)");
  else lua_pushfstring(L, "sqlite statement (%s)", sqlite3_sql(s->st));
  return 1;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int rlb_open_db(lua_State *L) {
  static const luaL_Reg conn_methods[] = {
      {"exec", c_exec},     {"query", c_query},         {"rows", c_rows},
      {"prepare", c_prepare}, {"last_insert_id", c_last_insert_id}, {"changes", c_changes},
      {"autocommit", c_autocommit}, {"close", c_close}, {NULL, NULL}};
  static const luaL_Reg conn_meta[] = {
      {"__gc", c_close}, {"__close", c_close}, {"__tostring", c_tostring}, {NULL, NULL}};
  static const luaL_Reg stmt_methods[] = {
      {"bind", s_bind}, {"step", s_step}, {"reset", s_reset}, {"columns", s_columns},
      {"finalize", s_finalize}, {NULL, NULL}};
  static const luaL_Reg stmt_meta[] = {
      {"__gc", s_finalize}, {"__close", s_finalize}, {"__tostring", s_tostring}, {NULL, NULL}};
  new_class(L, RLB_SQLITE, conn_methods, conn_meta);
  new_class(L, RLB_SQLITE_STMT, stmt_methods, stmt_meta);
  lua_pushcfunction(L, l_sqlite_open);
  lua_setfield(L, -2, "sqlite_open");
  return 0;
}
