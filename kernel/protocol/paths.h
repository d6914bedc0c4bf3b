/* paths.h - where Jupyter keeps per-user data, and making directories for
 * it: shared by `pyrometer-kernel install --user` and the history file. */
#ifndef PYROMETER_PATHS_H
#define PYROMETER_PATHS_H

#include <stddef.h>
#include <sys/types.h>

/* Writes the Jupyter data dir into buf, as jupyter_core finds it:
 * $JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter, else
 * $HOME/.local/share/jupyter. Returns 0, or -1 when none of them is set or
 * the path does not fit (buf is then undefined). */
int paths_jupyter_data_dir(char *buf, size_t len);

/* Creates path and its missing parents with mode. Returns 0, or -1 with
 * errno set. path is not modified. */
int paths_mkdirs(const char *path, mode_t mode);

#endif
