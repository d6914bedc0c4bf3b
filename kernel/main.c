/* main.c - pyrometer-kernel, the executable: the kernel with the interpreter
 * embedded in it. Everything but main() is cli.c's, which the hosted front
 * door (host.c, `python -m pyrometer_kernel`) shares. */
#include "cli.h"

int main(int argc, char **argv)
{
    static const cli_host host = {.hosted = 0, .prog = "pyrometer-kernel"};
    return cli_main(argc, argv, &host);
}
