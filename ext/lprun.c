/* lprun.c - placeholder. */
#include "module.h"
