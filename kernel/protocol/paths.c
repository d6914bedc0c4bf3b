/* paths.c - the Jupyter data dir and mkdir -p, for install and history. */
#include "paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int paths_jupyter_data_dir(char *buf, size_t len)
{
    const char *data = getenv("JUPYTER_DATA_DIR"), *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;
    if (data != NULL && *data != '\0')
        n = snprintf(buf, len, "%s", data);
    else if (xdg != NULL && *xdg != '\0')
        n = snprintf(buf, len, "%s/jupyter", xdg);
    else if (home != NULL && *home != '\0')
        n = snprintf(buf, len, "%s/.local/share/jupyter", home);
    else
        return -1;
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int paths_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(buf, mode);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}
