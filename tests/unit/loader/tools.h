/* SPDX-License-Identifier: Apache-2.0 */
/* For the suites that check tables with outside tools (iasl, dtc): find the
 * tool or skip, a scratch directory, running a command, reading its files. */
#ifndef VMM_TESTS_TOOLS_H
#define VMM_TESTS_TOOLS_H

#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_compat.h"

/* Whether name is an executable on PATH. */
static inline bool tool_available(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];
    if (!path)
        return false;
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, name);
        if (n && access(buf, X_OK) == 0)
            return true;
        p += n;
        if (*p == ':')
            p++;
    }
    return false;
}

/* Exit 77 (CTest skip) unless name is an executable on PATH. */
static inline void tool_require(const char *name, const char *package)
{
    if (tool_available(name))
        return;
    printf("SKIP: %s is not installed (Debian package %s)\n", name, package);
    exit(77);
}

/* A fresh scratch directory under $TMPDIR (static buffer). */
static inline const char *tool_tmpdir(void)
{
    static char dir[PATH_MAX];
    ck_assert_ptr_nonnull(mkdtemp(vmm_test_tmpname(dir, sizeof(dir), "vmm-tables-")));
    return dir;
}

/* Remove dir and the files in it. */
static inline void tool_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        unlink(vmm_test_path(path, sizeof(path), dir, e->d_name));
    }
    closedir(d);
    rmdir(dir);
}

static inline void tool_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[PATH_MAX];
    FILE *f = fopen(vmm_test_path(path, sizeof(path), dir, name), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole file as a NUL-terminated string (free it). */
static inline char *tool_read_file(const char *dir, const char *name)
{
    char path[PATH_MAX];
    FILE *f = fopen(vmm_test_path(path, sizeof(path), dir, name), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    char *s = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = '\0';
    fclose(f);
    return s;
}

/* Run the shell command cmd inside dir with stdout and stderr going to
 * dir/out; returns its exit status. */
static inline int tool_run(const char *dir, const char *cmd, const char *out)
{
    char line[PATH_MAX + 1024];
    int n = snprintf(line, sizeof(line), "cd '%s' && { %s; } >'%s' 2>&1", dir, cmd, out);
    ck_assert_msg(n >= 0 && (size_t)n < sizeof(line), "command too long: %s", cmd);
    int st = system(line);
    ck_assert_int_ne(st, -1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Comments dropped ("// ..." to the end of a line, and "/" "* ... *" "/")
 * and every run of whitespace made one space (none before a ')'), so tests
 * can match text without depending on a tool's layout. Returns a new string
 * (free it). */
static inline char *tool_normalize(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    ck_assert_ptr_nonnull(out);
    size_t n = 0;
    bool space = false;
    while (*s) {
        if (s[0] == '/' && s[1] == '/') {
            s += strcspn(s, "\n");
            continue;
        }
        if (s[0] == '/' && s[1] == '*') {
            const char *end = strstr(s + 2, "*/");
            s = end ? end + 2 : s + strlen(s);
            continue;
        }
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
            space = true;
            s++;
            continue;
        }
        if (space && n > 0 && *s != ')')
            out[n++] = ' ';
        space = false;
        out[n++] = *s++;
    }
    out[n] = '\0';
    return out;
}

static inline unsigned count_of(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#endif
