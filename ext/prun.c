/* prun.c - placeholder.
 *
 * TO THE HELPER BUILDING ISSUE 4 (%prun): before editing anything, read
 * /work/HELPER-RULES.md (build in your own build dir build-prun, commit only
 * your own paths, deadline 10:35 UTC, what your report must contain).
 * Delete this note when you write the file.
 */
#include "module.h"
