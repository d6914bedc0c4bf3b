/* stdmagics.h - the kernel's standard magics: %time, %timeit (timing.c),
 * %cd, %env, %who, %who_ls, %whos, %reset, %magic and %matplotlib,
 * registered in magics.c's table, and the inline display of matplotlib
 * figures and IPython.display (stdmagics_hooks.c). */
#ifndef PYROMETER_STDMAGICS_H
#define PYROMETER_STDMAGICS_H

/* Registers every standard magic and installs the display hooks. GIL held.
 * Returns 0, or -1 with an exception set. */
int stdmagics_register(void);

/* After each cell (GIL held): publishes open matplotlib figures inline. */
void stdmagics_after_cell(void);

#endif
