/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

#include "error.h"
#include "escape.h"
#include "log.h"

static int max_level = LOG_INFO;
static bool journal_enabled;
static const char *current_step;

void log_set_max_level(int level) {
        max_level = level;
}

void log_open_journal(bool enable) {
        struct stat st;

        /* Only talk to journald when its socket is really there. */
        journal_enabled = enable && stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
}

void log_set_step(const char *step) {
        current_step = step;
}

const char *error_to_string(int r) {
        switch (r < 0 ? -r : r) {
        case ERCI_USAGE:
                return "Invalid usage or configuration";
        case ERCI_REFUSED:
                return "Refused to protect existing data";
        case ERCI_FAILED:
                return "Failed";
        default:
                return strerror(r < 0 ? -r : r);
        }
}

/* Expand "%m" into the message of error e, since errno is not e here. */
static void format_with_error(char *buf, size_t size, int error, const char *fmt, va_list ap) {
        char expanded[1024];
        size_t j = 0;

        for (const char *p = fmt; *p && j + 1 < sizeof(expanded); p++) {
                if (p[0] == '%' && p[1] == 'm') {
                        const char *m = error_to_string(error);
                        size_t l = strlen(m);
                        /* Escape '%' in the message so vsnprintf leaves it alone. */
                        for (size_t k = 0; k < l && j + 2 < sizeof(expanded); k++) {
                                if (m[k] == '%')
                                        expanded[j++] = '%';
                                expanded[j++] = m[k];
                        }
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        expanded[j++] = *p++;
                        if (j + 1 < sizeof(expanded))
                                expanded[j++] = *p;
                } else
                        expanded[j++] = *p;
        }
        expanded[j] = 0;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        vsnprintf(buf, size, expanded, ap);
#pragma GCC diagnostic pop
}

/*
 * A continuation line of a message (a child's stderr, a unit's journal)
 * starts with this, so no text can pass for a line of its own.
 */
#define CONTINUATION "\n    "

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) {
        /* Each byte escapes to at most 4 ("\xNN"), a newline to the continuation. */
        char raw[2048], msg[sizeof(raw) * (sizeof(CONTINUATION) - 1)];
        va_list ap;

        if (level > max_level)
                return error < 0 ? error : -error;

        va_start(ap, fmt);
        format_with_error(raw, sizeof(raw), error, fmt, ap);
        va_end(ap);
        /*
         * Log lines carry host text too (paths, config lines, what mkfs or
         * the CI user's dockerd wrote): the same escaping as report items,
         * so nothing reaches the operator's terminal or the journal as a
         * control sequence or a forged line. Newlines stay, indented: a
         * child's multi-line error is meant to be read as lines.
         */
        escape_host_text_buf(msg, sizeof(msg), raw, CONTINUATION);

        if (current_step)
                fprintf(stderr, "%s: %s\n", current_step, msg);
        else
                fprintf(stderr, "%s\n", msg);

        if (journal_enabled)
                sd_journal_send("MESSAGE=%s", msg,
                                "PRIORITY=%i", level,
                                "SYSLOG_IDENTIFIER=rootless-ci",
                                "RCI_STEP=%s", strempty(current_step),
                                "ERRNO=%i", error < 0 ? -error : error,
                                "CODE_FILE=%s", file,
                                "CODE_LINE=%i", line,
                                NULL);

        return error < 0 ? error : -error;
}

void log_journal_event(int level, const char *step, const char *object, const char *change, const char *message) {
        if (!journal_enabled)
                return;
        sd_journal_send("MESSAGE=%s", message,
                        "PRIORITY=%i", level,
                        "SYSLOG_IDENTIFIER=rootless-ci",
                        "RCI_STEP=%s", strempty(step),
                        "RCI_OBJECT=%s", strempty(object),
                        "RCI_CHANGE=%s", strempty(change),
                        NULL);
}
