/*
** host.c -- the `rotlab` command: embeds Lua 5.4, preloads the binding as `rotlab.core`, points package.path at
** the project's Lua files and hands the command line to lua/rotlab/cli.lua.
**   rotlab run SCRIPT.lua [key=value ...] | rotlab report DB | rotlab SCRIPT.lua (same as run) | ...
*/
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int luaopen_rotlab_core(lua_State *L);

#ifndef RL_INSTALL_DIR
#define RL_INSTALL_DIR ""
#endif

/* The directory holding lua/rotlab/init.lua: $ROTLAB_ROOT, else the tree the binary was built in
** (binary at ROOT/build/<variant>/bin/rotlab), else the install directory. */
static void find_root(char *root, size_t n) {
  const char *env = getenv("ROTLAB_ROOT");
  if (env && *env) {
    snprintf(root, n, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = '\0';
    for (int up = 0; up < 4; up++) { /* strip bin/rotlab, then variant, then build */
      char *slash = strrchr(exe, '/');
      if (!slash) break;
      *slash = '\0';
      char probe[PATH_MAX + 32];
      snprintf(probe, sizeof probe, "%s/lua/rotlab/init.lua", exe);
      if (access(probe, R_OK) == 0) {
        snprintf(root, n, "%s", exe);
        return;
      }
    }
  }
  snprintf(root, n, "%s", RL_INSTALL_DIR);
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  if (getenv("ROTLAB_TRACEBACK")) luaL_traceback(L, L, msg, 1);
  else lua_pushstring(L, msg);
  return 1;
}

/* libgomp reads its environment when it is loaded, before main. By default an idle OpenMP thread spins for about
** 300000 polls before it sleeps; on 2 cores, in training with small batches (many short parallel regions, with
** OpenBLAS's own threads alongside) the spinning threads took the cores from the working ones: a MIL run (Musk1, 3
** poolings, 2 folds, 20 epochs) took 11.4 s, 7.4 s of it in the kernel, against 4.8 s with 1000 polls (6.1 s on one
** thread); large batches are unchanged. So a host started without a wait policy of its own re-executes itself once
** with GOMP_SPINCOUNT=1000 (if that fails, it carries on as it is). */
static void reexec_with_short_spins(char **argv) {
  if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY")) return;
  if (setenv("GOMP_SPINCOUNT", "1000", 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("GOMP_SPINCOUNT");
}

int main(int argc, char **argv) {
  reexec_with_short_spins(argv);
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "rotlab: cannot create Lua state\n");
    return 1;
  }
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_rotlab_core);
  lua_setfield(L, -2, "rotlab.core");
  lua_pop(L, 1);

  char root[PATH_MAX];
  find_root(root, sizeof root);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;", root, root, root);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushstring(L, root);
  lua_setglobal(L, "ROTLAB_ROOT");

  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushstring(L, "rotlab.cli");
  int status = lua_pcall(L, 1, 1, 1);
  if (status == LUA_OK) {
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, 0);
    status = lua_pcall(L, 1, 1, 1);
  }
  int rc = 0;
  if (status != LUA_OK) {
    fprintf(stderr, "rotlab: %s\n", lua_tostring(L, -1));
    rc = 1;
  } else if (lua_isinteger(L, -1)) {
    rc = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  return rc;
}
