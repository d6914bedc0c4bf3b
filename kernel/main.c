/* main.c - pyrometer-kernel: argument parsing, the start-up order
 * (connection file, sockets and threads, interpreter, fd capture), the
 * `install` subcommand, and exit codes (0 ok, 1 runtime failure, 2 usage or
 * connection-file error). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "connection.h"
#include "dispatch.h"
#include "interp.h"
#include "log.h"
#include "paths.h"
#include "server.h"
#include "share_embed.h"
#include "wire.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: pyrometer-kernel -f CONNECTION_FILE\n"
        "       pyrometer-kernel install [--user | --prefix DIR] [--name NAME]\n"
        "                                [--display-name TEXT] [--interrupt-mode signal|message]\n"
        "       pyrometer-kernel --version\n");
}

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "pyrometer-kernel install: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* pyrometer-kernel install: writes kernel.json and the logos, the way
 * `python -m ipykernel install` does. */
static int cmd_install(int argc, char **argv)
{
    const char *name = "pyrometer", *display = "Python 3 (pyrometer)", *prefix = NULL;
    const char *mode = "signal";
    int user = 0;
    char dir[PATH_MAX], exe[PATH_MAX];

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--user") == 0) {
            user = 1;
        } else if (strcmp(a, "--prefix") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (strcmp(a, "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(a, "--display-name") == 0 && i + 1 < argc) {
            display = argv[++i];
        } else if (strcmp(a, "--interrupt-mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "signal") != 0 && strcmp(mode, "message") != 0) {
                fprintf(stderr,
                        "pyrometer-kernel install: --interrupt-mode is signal or message\n");
                return 2;
            }
        } else {
            fprintf(stderr, "pyrometer-kernel install: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (user && prefix) {
        fprintf(stderr, "pyrometer-kernel install: --user and --prefix exclude each other\n");
        return 2;
    }
    if (strchr(name, '/') || name[0] == '\0' || name[0] == '.') {
        fprintf(stderr, "pyrometer-kernel install: invalid kernel name \"%s\"\n", name);
        return 2;
    }
    if (user) {
        char data[PATH_MAX];
        if (paths_jupyter_data_dir(data, sizeof data) < 0) {
            fprintf(stderr, "pyrometer-kernel install: no Jupyter data dir for --user "
                            "(set HOME or JUPYTER_DATA_DIR)\n");
            return 2;
        }
        if (snprintf(dir, sizeof dir, "%s/kernels/%s", data, name) >= (int)sizeof dir) {
            fprintf(stderr, "pyrometer-kernel install: the kernelspec path is too long\n");
            return 2;
        }
    } else {
        snprintf(dir, sizeof dir, "%s/share/jupyter/kernels/%s", prefix ? prefix : "/usr/local",
                 name);
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
        fprintf(stderr, "pyrometer-kernel install: cannot find my own path: %s\n", strerror(errno));
        return 1;
    }
    exe[n] = '\0';
    json_t *spec = json_pack("{s:[s,s,s], s:s, s:s, s:s, s:{s:b}}", "argv", exe, "-f",
                             "{connection_file}", "display_name", display, "language", "python",
                             "interrupt_mode", mode, "metadata", "debugger", 0);
    char *text = spec ? json_dumps(spec, JSON_INDENT(2)) : NULL;
    json_decref(spec);
    if (text == NULL || paths_mkdirs(dir, 0755) < 0) {
        fprintf(stderr, "pyrometer-kernel install: cannot create %s: %s\n", dir, strerror(errno));
        free(text);
        return 1;
    }
    int rc = write_file(dir, "kernel.json", text, strlen(text));
    free(text);
    rc |= write_file(dir, "logo-32x32.png", share_logo32, share_logo32_len);
    rc |= write_file(dir, "logo-64x64.png", share_logo64, share_logo64_len);
    if (rc)
        return 1;
    printf("Installed kernelspec %s in %s\n", name, dir);
    return 0;
}

/* Set once the interpreter runs. Main thread only. */
static int interp_started;

static void start_interp(void *arg)
{
    server *srv = arg;
    char err[512];
    if (interp_started)
        return;
    interp_started = 1;
    if (interp_start(server_shell_publisher(srv), server_signal_fd(srv), err, sizeof err) < 0) {
        log_msg("%s", err);
        _exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *conn_path = NULL;
    char err[512];
    connection conn;
    wire_signer signer;

    if (argc >= 2 && strcmp(argv[1], "install") == 0)
        return cmd_install(argc, argv);
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--connection-file") == 0) &&
            i + 1 < argc) {
            conn_path = argv[++i];
        } else if (strncmp(argv[i], "--connection-file=", 18) == 0) {
            conn_path = argv[i] + 18;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("pyrometer-kernel %s\n", PYROMETER_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-') {
            /* `jupyter run` appends its script's name; ipykernel ignores it too */
            fprintf(stderr, "pyrometer-kernel: ignoring extra argument %s\n", argv[i]);
        } else {
            fprintf(stderr, "pyrometer-kernel: unknown argument %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (conn_path == NULL) {
        fprintf(stderr, "pyrometer-kernel: missing -f CONNECTION_FILE\n");
        usage(stderr);
        return 2;
    }
    if (connection_load(conn_path, &conn, err, sizeof err) < 0) {
        fprintf(stderr, "pyrometer-kernel: %s\n", err);
        return 2;
    }
    if (wire_signer_init(&signer, conn.key, conn.key_len) < 0) {
        fprintf(stderr, "pyrometer-kernel: out of memory\n");
        return 1;
    }
    memset(conn.key, 0, sizeof conn.key);
    json_t *info = interp_kernel_info();
    server *srv = server_start(&conn, &signer, dispatch_control, NULL, err, sizeof err);
    if (srv == NULL) {
        fprintf(stderr, "pyrometer-kernel: %s\n", err);
        json_decref(info);
        wire_signer_free(&signer);
        return 1;
    }
    server_set_kernel_info(srv, info);
    publisher *pub = server_shell_publisher(srv);
    pub->iopub(pub->self, "status", json_pack("{s:s}", "execution_state", "starting"), NULL);
    int logfd = server_capture_fds(srv);
    if (logfd >= 0) {
        log_set_fd(logfd);
#if defined(__SANITIZE_ADDRESS__)
        /* Sanitizer reports go to the real stderr, not into a cell. */
        __sanitizer_set_report_fd((void *)(intptr_t)logfd);
#endif
    }
    /* The interpreter starts when the shell queue first runs dry (or before
     * the first request that needs it), so kernel_info_request, which needs
     * no Python, is answered while it boots. */
    server_set_idle_hook(srv, start_interp, srv);
    dispatch_set_interp_hook(start_interp, srv);
    int rc = server_run(srv, dispatch_shell, NULL);
    server_arm_exit_watchdog(srv, 3);
    if (interp_started)
        interp_stop();
    server_stop(srv);
    wire_thread_cleanup();
    wire_signer_free(&signer);
    if (logfd >= 0) {
        dup2(logfd, 2); /* what runs at exit (e.g. LeakSanitizer) writes here */
#if defined(__SANITIZE_ADDRESS__)
        __sanitizer_set_report_fd((void *)(intptr_t)2);
#endif
        close(logfd);
    }
    return rc;
}
