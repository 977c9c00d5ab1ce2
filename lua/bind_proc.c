/*
** bind_proc.c -- processes for the grid launcher and its tests (POSIX glue; re-exported as rl.proc).
**   core.proc_spawn(argv [, {pgroup = false, stdout = path, stderr = path, env = {NAME = value}}]) -> pid
**        argv = {program, args...}; program found on PATH when it has no '/'; stdout/stderr: files opened for
**        appending (created 0644); pgroup: the child leads a new process group (kill(-pid, ...) reaches all of it);
**        env: variables set (string) or removed (false) in the child's environment
**   core.proc_wait(pid [, nohang]) -> pid, "exit", code | pid, "signal", signo | nil (nohang, still running)
**        pid = -1 waits for any child
**   core.proc_kill(pid, sig) -> true | false, message     sig: an integer or "KILL", "TERM", "INT", "HUP", ...
**   core.proc_alive(pid) -> boolean      a zombie (dead, not yet reaped: e.g. an orphan under a PID 1 that does not
**                                        reap) counts as dead (Linux /proc/PID/stat state Z or X)
**   core.proc_sleep(seconds);  core.proc_exe() -> absolute path of this program;  core.proc_pid() -> pid
**   core.proc_cpus() -> number of CPUs this process may run on (its affinity mask: what Slurm or taskset gave it)
**   core.proc_trap(names) -> true: SIGTERM/SIGINT/... set a flag instead of killing the process
**   core.proc_trapped() -> name of the first trapped signal received, or nil
** The OS is the "core" here: there is no state to keep, so the calls are made directly. Every error is a Lua error
** naming the call and the OS message; nothing is allocated with malloc (argument arrays live in userdata).
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bind.h"

extern char **environ;

/* Signals known by name (kill, trap). */
static const struct {
  const char *name;
  int sig;
} signal_names[] = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},
                    {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                    {"QUIT", SIGQUIT}, {NULL, 0}};

/* The first trapped signal received (0: none). */
static volatile sig_atomic_t trapped_signal = 0;

static const char *signal_name(int sig) {
  for (int i = 0; signal_names[i].name; i++)
    if (signal_names[i].sig == sig) return signal_names[i].name;
  return NULL;
}

static int check_signal(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer s = luaL_checkinteger(L, idx);
    luaL_argcheck(L, s >= 0 && s < NSIG, idx, "signal number out of range");
    return (int)s;
  }
  const char *name = luaL_checkstring(L, idx);
  for (int i = 0; signal_names[i].name; i++)
    if (strcmp(signal_names[i].name, name) == 0) return signal_names[i].sig;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s' (expected KILL, TERM, INT, HUP, STOP, "
                                                  "CONT, USR1, USR2, QUIT or a number)", name));
}

/* A NULL-terminated array of n + 1 pointers in a userdata pushed on the stack (collected by the GC). */
static const char **push_ptr_array(lua_State *L, size_t n) {
  const char **a = lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);
  for (size_t i = 0; i <= n; i++) a[i] = NULL;
  return a;
}

/* Builds the child's environment: environ with the overrides of table env_idx applied. The strings stay
** referenced from the stack (a table at the returned position keeps the formatted ones). */
static char *const *build_env(lua_State *L, int env_idx) {
  size_t base = 0, extra = 0;
  while (environ[base]) base++;
  lua_pushnil(L);
  while (lua_next(L, env_idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && !(lua_isboolean(L, -1) &&
                                                                                 !lua_toboolean(L, -1))))
      luaL_error(L, "bad option env to 'spawn' (expected NAME = string or false)");
    const char *k = lua_tostring(L, -2);
    if (*k == '\0' || strchr(k, '=')) luaL_error(L, "bad option env to 'spawn' (bad variable name '%s')", k);
    extra++;
    lua_pop(L, 1);
  }
  const char **envp = push_ptr_array(L, base + extra);
  lua_newtable(L); /* keeps the "NAME=value" strings alive */
  int keep = lua_gettop(L);
  size_t n = 0;
  for (size_t i = 0; i < base; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    lua_pushlstring(L, environ[i], klen);
    int overridden = lua_rawget(L, env_idx) != LUA_TNIL;
    lua_pop(L, 1);
    if (!overridden) envp[n++] = environ[i];
  }
  lua_pushnil(L);
  while (lua_next(L, env_idx)) {
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *s = lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      envp[n++] = s;
      lua_rawseti(L, keep, (lua_Integer)n);
    }
    lua_pop(L, 1);
  }
  return (char *const *)envp;
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const known[] = {"pgroup", "stdout", "stderr", "env", NULL};
  rlb_check_options(L, 2, "spawn", known);
  lua_Integer argc = luaL_len(L, 1);
  luaL_argcheck(L, argc >= 1, 1, "expected a non-empty list {program, args...}");
  const char **argv = push_ptr_array(L, (size_t)argc);
  for (lua_Integer i = 1; i <= argc; i++) {
    if (lua_geti(L, 1, i) != LUA_TSTRING) luaL_argerror(L, 1, lua_pushfstring(L, "entry %d is not a string", (int)i));
    argv[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays referenced by the argv table */
  }
  int pgroup = rlb_opt_boolean(L, 2, "pgroup", 0);
  const char *out = rlb_opt_string(L, 2, "stdout", NULL);
  const char *err = rlb_opt_string(L, 2, "stderr", NULL);
  char *const *envp = environ;
  if (rlb_opt_present(L, 2, "env")) {
    lua_getfield(L, 2, "env");
    if (!lua_istable(L, -1)) luaL_error(L, "bad option env to 'spawn' (expected a table)");
    envp = build_env(L, lua_gettop(L));
  }

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (out) posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (err) posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_APPEND, 0644);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all); /* trapped signals are default again in the child */
  if (pgroup) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid;
  int rc = strchr(argv[0], '/') ? posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, envp)
                                 : posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return luaL_error(L, "spawn: cannot start '%s': %s", argv[0], strerror(rc));
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

static int l_wait(lua_State *L) {
  lua_Integer p = luaL_checkinteger(L, 1);
  luaL_argcheck(L, p == -1 || (p > 0 && p <= INT_MAX), 1, "expected a process id or -1");
  int nohang = lua_toboolean(L, 2);
  int status = 0;
  pid_t got;
  do got = waitpid((pid_t)p, &status, nohang ? WNOHANG : 0);
  while (got < 0 && errno == EINTR);
  if (got < 0) return luaL_error(L, "wait: process %d: %s", (int)p, strerror(errno));
  if (got == 0) return 0; /* nohang, still running */
  lua_pushinteger(L, (lua_Integer)got);
  if (WIFEXITED(status)) {
    lua_pushstring(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  } else {
    lua_pushstring(L, "signal");
    lua_pushinteger(L, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  return 3;
}

static int l_kill(lua_State *L) {
  lua_Integer p = luaL_checkinteger(L, 1);
  luaL_argcheck(L, p != 0 && p >= -INT_MAX && p <= INT_MAX, 1, "expected a process id (negative: a group)");
  int sig = check_signal(L, 2);
  if (kill((pid_t)p, sig) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, strerror(errno));
  return 2;
}

/* Whether /proc says process pid is a zombie (or dying); 0 when /proc cannot tell. */
static int is_zombie(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *close = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (!close || close[1] != ' ') return 0;
  return close[2] == 'Z' || close[2] == 'X';
}

static int l_alive(lua_State *L) {
  lua_Integer p = luaL_checkinteger(L, 1);
  luaL_argcheck(L, p > 0 && p <= INT_MAX, 1, "expected a process id");
  int exists = kill((pid_t)p, 0) == 0 || errno == EPERM;
  lua_pushboolean(L, exists && !is_zombie((pid_t)p));
  return 1;
}

static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s <= 1e6, 1, "expected seconds in 0..1e6");
  struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !trapped_signal) {}
  return 0;
}

static int l_exe(lua_State *L) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return luaL_error(L, "exe: cannot read /proc/self/exe: %s", strerror(errno));
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int l_cpus(lua_State *L) {
  cpu_set_t set;
  long n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n < 1 ? 1 : n);
  return 1;
}

static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static void on_trapped(int sig) {
  if (!trapped_signal) trapped_signal = sig;
}

static int l_trap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    int sig = check_signal(L, lua_gettop(L));
    if (sig == SIGKILL || sig == SIGSTOP || sig == 0) luaL_argerror(L, 1, "KILL, STOP and 0 cannot be trapped");
    lua_pop(L, 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trapped;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) return luaL_error(L, "trap: %s", strerror(errno));
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_trapped(lua_State *L) {
  int sig = trapped_signal;
  if (!sig) return 0;
  const char *name = signal_name(sig);
  if (name) lua_pushstring(L, name);
  else lua_pushinteger(L, sig);
  return 1;
}

int rlb_open_proc(lua_State *L) {
  static const luaL_Reg fns[] = {{"proc_spawn", l_spawn}, {"proc_wait", l_wait},   {"proc_kill", l_kill},
                                 {"proc_alive", l_alive}, {"proc_sleep", l_sleep}, {"proc_exe", l_exe},
                                 {"proc_pid", l_pid},     {"proc_cpus", l_cpus},   {"proc_trap", l_trap},
                                 {"proc_trapped", l_trapped},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
