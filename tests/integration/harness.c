/* SPDX-License-Identifier: Apache-2.0 */
/* The integration-test fixture (see harness.h). */
#include "harness.h"

#include <check.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *harness_guest_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s.elf", VMM_GUEST_DIR, name);
    return path;
}

void harness_init(struct harness *h, enum vmm_irqchip irqchip, unsigned mem_mb)
{
    harness_init_backed(h, irqchip, mem_mb, VMM_MEMORY_ANON);
}

void harness_init_backed(struct harness *h, enum vmm_irqchip irqchip, unsigned mem_mb,
                         enum vmm_memory_backing backing)
{
    memset(h, 0, sizeof(*h));
    ck_assert_int_eq(pipe2(h->console, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(pipe2(h->input, O_CLOEXEC | O_NONBLOCK), 0);
    /* Make the console pipe big enough that a chatty guest never blocks. */
    fcntl(h->console[1], F_SETPIPE_SZ, 1 << 20);

    struct vmm_vm_config cfg = VMM_INIT(struct vmm_vm_config, .irqchip = irqchip);
    ck_assert_int_eq(vmm_vm_create(&cfg, &h->vm), 0);
    struct vmm_region_config ram = {.size = sizeof(struct vmm_region_config),
                                    .gpa = 0,
                                    .len = (uint64_t)mem_mb << 20,
                                    .backing = backing};
    ck_assert_int_eq(vmm_vm_add_memory(h->vm, &ram), 0);
    struct vmm_uart_config uart =
        VMM_INIT(struct vmm_uart_config, .out_fd = h->console[1], .in_fd = h->input[0]);
    ck_assert_int_eq(vmm_vm_add_uart(h->vm, VMM_COM1_PORT, VMM_COM1_IRQ, &uart, NULL), 0);
    ck_assert_int_eq(vmm_vm_add_exit_device(h->vm, VMM_EXIT_PORT), 0);
    ck_assert_int_eq(vmm_vm_add_i8042(h->vm), 0);
}

static void create_vcpus(struct harness *h, uint64_t entry, unsigned vcpus)
{
    for (unsigned i = 0; i < vcpus; i++) {
        struct vmm_vcpu *vcpu;
        ck_assert_int_eq(vmm_vcpu_create(h->vm, i, &vcpu), 0);
    }
    for (unsigned i = 0; i < vcpus; i++) {
        struct vmm_x86_boot_state boot =
            VMM_INIT(struct vmm_x86_boot_state, .entry = entry, .arg0 = i, .arg1 = vcpus);
        ck_assert_int_eq(vmm_vcpu_set_boot_state(vmm_vm_vcpu(h->vm, i), &boot), 0);
    }
}

void harness_load_guest(struct harness *h, const char *name, unsigned vcpus)
{
    struct vmm_load_result res = VMM_INIT(struct vmm_load_result);
    int r = vmm_elf_load_file(vmm_vm_memory(h->vm), harness_guest_path(name), NULL, &res);
    ck_assert_msg(r == 0, "loading %s: %d %s", name, r, res.error);
    create_vcpus(h, res.entry, vcpus);
}

void harness_load_raw(struct harness *h, const void *code, size_t len, unsigned vcpus)
{
    ck_assert_int_eq(vmm_memory_write(vmm_vm_memory(h->vm), HARNESS_RAW_ENTRY, code, len), 0);
    create_vcpus(h, HARNESS_RAW_ENTRY, vcpus);
}

static void drain_console(struct harness *h)
{
    for (;;) {
        size_t room = sizeof(h->output) - 1 - h->output_len;
        if (room == 0)
            break;
        ssize_t n = read(h->console[0], h->output + h->output_len, room);
        if (n <= 0)
            break;
        h->output_len += (size_t)n;
    }
    h->output[h->output_len] = '\0';
}

void harness_run(struct harness *h)
{
    h->exit = VMM_INIT(struct vmm_exit);
    ck_assert_int_eq(vmm_vm_run(h->vm, &h->exit), 0);
    drain_console(h);
}

void harness_fini(struct harness *h)
{
    vmm_vm_destroy(h->vm);
    for (int i = 0; i < 2; i++) {
        close(h->console[i]);
        close(h->input[i]);
    }
}

void harness_write_raw_elf(const char *path, const void *code, size_t len)
{
    struct {
        Elf64_Ehdr eh;
        Elf64_Phdr ph;
    } hdr = {
        .eh = {.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT},
               .e_type = ET_EXEC,
               .e_machine = EM_X86_64,
               .e_version = EV_CURRENT,
               .e_entry = HARNESS_RAW_ENTRY,
               .e_phoff = sizeof(Elf64_Ehdr),
               .e_ehsize = sizeof(Elf64_Ehdr),
               .e_phentsize = sizeof(Elf64_Phdr),
               .e_phnum = 1},
        .ph = {.p_type = PT_LOAD,
               .p_flags = PF_R | PF_X,
               .p_offset = sizeof(hdr),
               .p_vaddr = HARNESS_RAW_ENTRY,
               .p_paddr = HARNESS_RAW_ENTRY,
               .p_filesz = len,
               .p_memsz = len,
               .p_align = 0x1000},
    };
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(&hdr, sizeof(hdr), 1, f), 1);
    ck_assert_uint_eq(fwrite(code, len, 1, f), 1);
    ck_assert_int_eq(fclose(f), 0);
}
