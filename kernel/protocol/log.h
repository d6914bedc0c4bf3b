/* log.h - the kernel's own diagnostics, written to the stderr the kernel was
 * started with (before fd 2 is captured into `stream` messages). */
#ifndef PYROMETER_LOG_H
#define PYROMETER_LOG_H

/* Remembers fd as the log destination (the caller keeps it open). */
void log_set_fd(int fd);
/* Writes one line "[pyrometer] ..." atomically. Never logs the key. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
