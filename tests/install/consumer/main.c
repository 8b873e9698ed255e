/* SPDX-License-Identifier: Apache-2.0 */
/* Uses the installed headers and library: prints the version and checks a
 * guest-memory round trip (no /dev/kvm needed). */
#include <stdio.h>
#include <string.h>
#include <vmm/vmm.h>

int main(void)
{
    struct vmm_memory *mem;
    static char ram[8192];
    char out[6] = "";
    if (vmm_memory_create(&mem) < 0 || vmm_memory_add_external(mem, 0x1000, sizeof(ram), ram) < 0 ||
        vmm_memory_write(mem, 0x2000, "hello", 6) < 0 || vmm_memory_read(mem, 0x2000, out, 6) < 0)
        return 1;
    vmm_memory_destroy(mem);
    printf("libvmm %s: %s\n", vmm_version_string(), out);
    return strcmp(out, "hello") != 0;
}
