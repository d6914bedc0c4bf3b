/* stdmagics.h - the kernel's standard magics: %time, %timeit, %cd, %env,
 * %who, %whos, %reset, %magic, %matplotlib, registered in magics.c's table. */
#ifndef PYROMETER_STDMAGICS_H
#define PYROMETER_STDMAGICS_H

/* Registers every standard magic. GIL held. Returns 0, or -1 with an
 * exception set. */
int stdmagics_register(void);

/* After each cell (GIL held): publishes open matplotlib figures inline. */
void stdmagics_after_cell(void);

#endif
