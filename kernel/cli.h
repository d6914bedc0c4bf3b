/* cli.h - the kernel's command line, shared by its two front doors: the
 * `pyrometer-kernel` executable, which embeds the interpreter, and
 * `python -m pyrometer_kernel`, where the interpreter hosts the kernel. */
#ifndef PYROMETER_CLI_H
#define PYROMETER_CLI_H

/* Who runs the kernel. */
typedef struct {
    /* 1: called by the _pyrometer_host module, in an interpreter that is
     * already running, with the GIL released; 0: the executable. */
    int hosted;
    /* The command name used in messages. */
    const char *prog;
    /* hosted: sys.executable and sys.prefix (borrowed); NULL for the
     * executable, which derives them from its own path. */
    const char *python, *sys_prefix;
} cli_host;

/* Runs `-f CONNECTION_FILE` (the kernel, until shutdown), `install ...`,
 * `--version` or `--help`, with argv[0] the program. Returns the exit code:
 * 0 ok, 1 runtime failure, 2 usage or connection-file error. */
int cli_main(int argc, char **argv, const cli_host *host);

#endif
