/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm-run's option parser (examples/vmm-run.c's parse_options, built here
 * with the launcher's main renamed). The input is the command line: its
 * NUL-separated pieces are the arguments after the program name, at most 64.
 *
 * Checked: no memory error, UB or leak (the sanitizers: the parser runs
 * many times in one process, so whatever it allocates must be released by
 * free_options or with the message), a failure always comes with a
 * message, one line unless an argument it quotes has a newline, and an accepted command line
 * describes a machine vmm-run can build (an image, or a VM to restore or receive; memory and vCPU
 * counts in range; every disk with a path, every net with a tap).
 */
#undef _GNU_SOURCE /* vmm-run.c defines it */
#define main vmm_run_main
int vmm_run_main(int argc, char **argv);
#include "../examples/vmm-run.c"
#undef main

#include "fuzz_common.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        fz_quiet_logs();
        ready = true;
    }
    /* One copy, cut at the NULs: the parser writes into its arguments. */
    char *buf = malloc(size + 1);
    FZ_CHECK(buf);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char prog_name[] = "vmm-run";
    char *argv[MAX_ARGS + 2] = {prog_name};
    int argc = 1;
    for (size_t i = 0; i < size && argc <= MAX_ARGS; argc++) {
        argv[argc] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    /* The messages quote arguments: one line unless an argument has more. */
    bool newline = memchr(data, '\n', size) != NULL;

    struct options o;
    char *why = NULL;
    enum parse_result r = parse_options(argc, argv, &o, &why);
    switch (r) {
    case PARSE_ERROR:
        FZ_CHECK(why && *why && (newline || !strchr(why, '\n')));
        break;
    case PARSE_RUN:
        FZ_CHECK(!why);
        if (o.migrate_listen || o.restore_dir)
            break; /* the machine comes from the source or the snapshot */
        FZ_CHECK(o.kernel && !o.restore_memory_given);
        FZ_CHECK(o.mem_size >= MIN_MEM && o.mem_size <= MAX_MEM && o.mem_size % 4096 == 0);
        FZ_CHECK(o.vcpus >= 1 && o.vcpus <= MAX_VCPUS);
        FZ_CHECK(o.nr_disks <= MAX_DISKS && o.nr_nets <= MAX_NETS);
        for (unsigned i = 0; i < o.nr_disks; i++)
            FZ_CHECK(o.disks[i].path && *o.disks[i].path);
        for (unsigned i = 0; i < o.nr_nets; i++)
            FZ_CHECK(o.nets[i].tap && *o.nets[i].tap && strlen(o.nets[i].tap) < 16);
        FZ_CHECK(!o.snapshot_signal == !o.save_dir);
        break;
    case PARSE_HELP:
    case PARSE_VERSION:
    case PARSE_CPU_HELP:
        FZ_CHECK(!why);
        break;
    default:
        FZ_CHECK(!"parse_options returned no known result");
    }
    free(why);
    free_options(&o);
    free(buf);
    return 0;
}
