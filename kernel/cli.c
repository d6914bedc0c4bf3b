/* cli.c - the kernel's command line, for both front doors (cli.h): argument
 * parsing, the start-up order (connection file, sockets and threads,
 * interpreter, fd capture), the `install` subcommand and exit codes (0 ok,
 * 1 runtime failure, 2 usage or connection-file error). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
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

#define PY_XY_STR_(a, b) #a "." #b
#define PY_XY_STR(a, b)  PY_XY_STR_(a, b)
/* "3.14": the Python this kernel was built for. */
#define PY_XY PY_XY_STR(PY_MAJOR_VERSION, PY_MINOR_VERSION)

#if defined(__SANITIZE_ADDRESS__)
/* A copy of fd for a sanitizer runtime to keep (2 stays 2), or 2. */
static int report_copy(int fd)
{
    int c = fd == 2 ? 2 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return c >= 0 ? c : 2;
}

/* Points the reports of every sanitizer runtime at fd. GCC links UBSan as a
 * runtime of its own (libubsan) with its own report fd, which
 * __sanitizer_set_report_fd (bound to ASan's) leaves alone: a UBSan report
 * went to fd 2, the running cell's stderr stream, and with halt_on_error
 * the kernel exited before even that was published, so the client saw only
 * a request without a reply. Each runtime gets a copy of fd, never fd
 * itself: libubsan starts at its first report and then resets ASan's report
 * file to stderr, closing the fd ASan had (after a UBSan report that does
 * not halt, ASan's reports go to fd 2 again). The copies stay open to the
 * end. Clang links one runtime for both, and no libubsan. */
static void sanitizer_reports_to(int fd)
{
    __sanitizer_set_report_fd((void *)(intptr_t)report_copy(fd));
    void *ubsan = dlopen("libubsan.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (ubsan == NULL)
        return;
    void (*set_fd)(void *) = (void (*)(void *))dlsym(ubsan, "__sanitizer_set_report_fd");
    if (set_fd != NULL && set_fd != __sanitizer_set_report_fd)
        set_fd((void *)(intptr_t)report_copy(fd));
    dlclose(ubsan);
}
#endif

static void usage(FILE *out, const cli_host *host)
{
    fprintf(out,
            "usage: %s -f CONNECTION_FILE\n"
            "       %s install [--user | --sys-prefix | --prefix DIR] [--name NAME]\n"
            "            [--display-name TEXT] [--interrupt-mode signal|message]\n"
            "            [--hosted | --embedded]\n"
            "       %s --version\n",
            host->prog, host->prog, host->prog);
}

static int write_file(const char *prog, const char *dir, const char *name, const void *data,
                      size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "%s install: cannot write %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The interpreter a hosted kernelspec starts: the python3.X beside
 * sys.executable (when Python runs this) or beside the executable (a venv's
 * bin/), so that an upgrade that repoints python3 to another version does
 * not change the kernel's Python; else sys.executable, else the Python the
 * executable was built for. Writes into buf; returns 0 or -1. */
static int hosted_python(const cli_host *host, const char *exe, char *buf, size_t len)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", host->python ? host->python : exe);
    if (snprintf(buf, len, "%s/python" PY_XY, dirname(dir)) < (int)len && access(buf, X_OK) == 0)
        return 0;
    if (snprintf(buf, len, "%s", host->python ? host->python : PYROMETER_PYTHON) >= (int)len)
        return -1;
    return 0;
}

/* `install`: writes kernel.json and the logos, the way
 * `python -m ipykernel install` does. The kernelspec starts either the
 * executable (--embedded) or the interpreter with -m pyrometer_kernel
 * (--hosted); the default is the build's choice for the executable and
 * --hosted when Python runs this. */
static int cmd_install(int argc, char **argv, const cli_host *host)
{
    const char *name = "pyrometer", *display = "Python " PY_XY " (pyrometer)", *prefix = NULL;
    const char *mode = "signal", *prog = host->prog;
    int user = 0, sys_prefix = 0, hosted = host->hosted || PYROMETER_HOSTED_DEFAULT;
    char dir[PATH_MAX], exe[PATH_MAX], python[PATH_MAX], pfx[PATH_MAX];

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--user") == 0) {
            user = 1;
        } else if (strcmp(a, "--sys-prefix") == 0) {
            sys_prefix = 1;
        } else if (strcmp(a, "--prefix") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (strcmp(a, "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(a, "--display-name") == 0 && i + 1 < argc) {
            display = argv[++i];
        } else if (strcmp(a, "--hosted") == 0) {
            hosted = 1;
        } else if (strcmp(a, "--embedded") == 0) {
            hosted = 0;
        } else if (strcmp(a, "--interrupt-mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "signal") != 0 && strcmp(mode, "message") != 0) {
                fprintf(stderr, "%s install: --interrupt-mode is signal or message\n", prog);
                return 2;
            }
        } else {
            fprintf(stderr, "%s install: unknown or incomplete option %s\n", prog, a);
            usage(stderr, host);
            return 2;
        }
    }
    if (user + sys_prefix + (prefix != NULL) > 1) {
        fprintf(stderr, "%s install: --user, --sys-prefix and --prefix exclude each other\n", prog);
        return 2;
    }
    if (strchr(name, '/') || name[0] == '\0' || name[0] == '.') {
        fprintf(stderr, "%s install: invalid kernel name \"%s\"\n", prog, name);
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
        fprintf(stderr, "%s install: cannot find my own path: %s\n", prog, strerror(errno));
        return 1;
    }
    exe[n] = '\0';
    if (hosted && host->hosted == 0 && PYROMETER_HOSTED_AVAILABLE == 0) {
        fprintf(stderr, "%s install: --hosted: this build has no pyrometer_kernel module\n", prog);
        return 2;
    }
    if (hosted && hosted_python(host, exe, python, sizeof python) < 0) {
        fprintf(stderr, "%s install: the interpreter's path is too long\n", prog);
        return 1;
    }
    if (!hosted && host->hosted) { /* the executable installed beside this Python */
        if (snprintf(exe, sizeof exe, "%s/bin/pyrometer-kernel", host->sys_prefix) >=
                (int)sizeof exe ||
            access(exe, X_OK) != 0) {
            fprintf(stderr, "%s install: --embedded: no %s\n", prog, exe);
            return 2;
        }
    }
    if (sys_prefix) {
        if (host->sys_prefix != NULL) {
            snprintf(pfx, sizeof pfx, "%s", host->sys_prefix);
        } else { /* <prefix>/bin/pyrometer-kernel */
            char tmp[PATH_MAX];
            snprintf(tmp, sizeof tmp, "%s", exe);
            snprintf(pfx, sizeof pfx, "%s", dirname(dirname(tmp)));
        }
        prefix = pfx;
    }
    if (user) {
        char data[PATH_MAX];
        if (paths_jupyter_data_dir(data, sizeof data) < 0) {
            fprintf(stderr,
                    "%s install: no Jupyter data dir for --user "
                    "(set HOME or JUPYTER_DATA_DIR)\n",
                    prog);
            return 2;
        }
        if (snprintf(dir, sizeof dir, "%s/kernels/%s", data, name) >= (int)sizeof dir) {
            fprintf(stderr, "%s install: the kernelspec path is too long\n", prog);
            return 2;
        }
    } else if (snprintf(dir, sizeof dir, "%s/share/jupyter/kernels/%s",
                        prefix ? prefix : "/usr/local", name) >= (int)sizeof dir) {
        fprintf(stderr, "%s install: the kernelspec path is too long\n", prog);
        return 2;
    }
    json_t *args = hosted ? json_pack("[s,s,s,s,s]", python, "-m", "pyrometer_kernel", "-f",
                                      "{connection_file}")
                          : json_pack("[s,s,s]", exe, "-f", "{connection_file}");
    json_t *spec =
        json_pack("{s:o*, s:s, s:s, s:s, s:{s:b}}", "argv", args, "display_name", display,
                  "language", "python", "interrupt_mode", mode, "metadata", "debugger", 0);
    char *text = spec ? json_dumps(spec, JSON_INDENT(2)) : NULL;
    json_decref(spec);
    if (text == NULL || paths_mkdirs(dir, 0755) < 0) {
        fprintf(stderr, "%s install: cannot create %s: %s\n", prog, dir, strerror(errno));
        free(text);
        return 1;
    }
    int rc = write_file(prog, dir, "kernel.json", text, strlen(text));
    free(text);
    rc |= write_file(prog, dir, "logo-32x32.png", share_logo32, share_logo32_len);
    rc |= write_file(prog, dir, "logo-64x64.png", share_logo64, share_logo64_len);
    if (rc)
        return 1;
    printf("Installed kernelspec %s in %s\n", name, dir);
    return 0;
}

/* Set once the interpreter runs. Main thread only. */
static int interp_started;
/* The host given to cli_main. Main thread only. */
static const cli_host *the_host;

static void start_interp(void *arg)
{
    server *srv = arg;
    char err[512];
    if (interp_started)
        return;
    interp_started = 1;
    if (interp_start(server_shell_publisher(srv), server_signal_fd(srv), the_host->hosted, err,
                     sizeof err) < 0) {
        log_msg("%s", err);
        _exit(1);
    }
}

/* The kernel itself, until shutdown. */
static int run_kernel(const char *conn_path, const cli_host *host)
{
    char err[512];
    connection conn;
    wire_signer signer;

    if (connection_load(conn_path, &conn, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", host->prog, err);
        return 2;
    }
    if (!host->hosted && interp_check_stdlib(err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", host->prog, err);
        return 1;
    }
    if (wire_signer_init(&signer, conn.key, conn.key_len) < 0) {
        fprintf(stderr, "%s: out of memory\n", host->prog);
        return 1;
    }
    memset(conn.key, 0, sizeof conn.key);
    the_host = host;
    json_t *info = interp_kernel_info();
    server *srv = server_start(&conn, &signer, dispatch_control, NULL, err, sizeof err);
    if (srv == NULL) {
        fprintf(stderr, "%s: %s\n", host->prog, err);
        json_decref(info);
        wire_signer_free(&signer);
        return 1;
    }
    server_set_kernel_info(srv, info);
    publisher *pub = server_shell_publisher(srv);
    pub->iopub(pub->self, "status", json_pack("{s:s}", "execution_state", "starting"), NULL);
    /* hosted: the interpreter lives on after the kernel; its fd 1 comes back */
    int out_fd = host->hosted ? dup(1) : -1;
    int logfd = server_capture_fds(srv);
    if (logfd >= 0) {
        log_set_fd(logfd);
#if defined(__SANITIZE_ADDRESS__)
        /* Sanitizer reports go to the real stderr, not into a cell. */
        sanitizer_reports_to(logfd);
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
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        close(out_fd);
    }
    if (logfd >= 0) {
        dup2(logfd, 2); /* what runs at exit (e.g. LeakSanitizer) writes here */
#if defined(__SANITIZE_ADDRESS__)
        sanitizer_reports_to(2);
#endif
        close(logfd);
    }
    return rc;
}

int cli_main(int argc, char **argv, const cli_host *host)
{
    const char *conn_path = NULL;

    if (argc >= 2 && strcmp(argv[1], "install") == 0)
        return cmd_install(argc, argv, host);
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--connection-file") == 0) &&
            i + 1 < argc) {
            conn_path = argv[++i];
        } else if (strncmp(argv[i], "--connection-file=", 18) == 0) {
            conn_path = argv[i] + 18;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("pyrometer-kernel %s (Python " PY_XY ", %s)\n", PYROMETER_VERSION,
                   host->hosted ? "hosted" : "embedded");
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout, host);
            return 0;
        } else if (argv[i][0] != '-') {
            /* `jupyter run` appends its script's name; ipykernel ignores it too */
            fprintf(stderr, "%s: ignoring extra argument %s\n", host->prog, argv[i]);
        } else {
            fprintf(stderr, "%s: unknown argument %s\n", host->prog, argv[i]);
            usage(stderr, host);
            return 2;
        }
    }
    if (conn_path == NULL) {
        fprintf(stderr, "%s: missing -f CONNECTION_FILE\n", host->prog);
        usage(stderr, host);
        return 2;
    }
    return run_kernel(conn_path, host);
}
