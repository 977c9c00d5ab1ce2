/*
** bind_nn.c -- Lua binding of core/nn (placeholder until the area lands).
*/
#include "bind.h"

int rlb_open_nn(lua_State *L) {
  (void)L;
  return 0;
}
