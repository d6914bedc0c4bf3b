/* prun.c - placeholder. */
#include "module.h"
