/* SPDX-License-Identifier: Apache-2.0 */
/* The ACPI tables through ACPICA's own tools: each table is dumped to a
 * file, disassembled with `iasl -d` (which checks signatures, lengths and
 * checksums and decodes every field), and the text is checked; the DSDT and
 * MADT are then compiled back from that text. Skips (77) without iasl
 * (Debian package acpica-tools). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <vmm/acpi.h>

#include "check_compat.h"
#include "tables_fixture.h"
#include "tools.h"

static struct fixture fx;
static const char *dir;

static void setup(void)
{
    fx_init(&fx, FX_RAM_SIZE);
    dir = tool_tmpdir();
}

static void teardown(void)
{
    tool_rmdir(dir);
    fx_fini(&fx);
}

static void dump_table(uint64_t gpa, const char *name)
{
    tool_write_file(dir, name, fx.ram + gpa, get32(fx.ram + gpa + 4));
}

/* Disassemble name.dat into name.dsl; iasl must neither fail nor complain.
 * Returns the normalized text (free it). */
static char *disassemble(const char *name)
{
    char cmd[128], out[64], dsl[64];
    snprintf(cmd, sizeof(cmd), "iasl -d %s.dat", name);
    snprintf(out, sizeof(out), "%s.log", name);
    snprintf(dsl, sizeof(dsl), "%s.dsl", name);
    int rc = tool_run(dir, cmd, out);
    char *log = tool_read_file(dir, out);
    ck_assert_msg(rc == 0, "iasl -d %s failed (%d):\n%s", name, rc, log);
    ck_assert_msg(!strstr(log, "Error") && !strstr(log, "Warning") && !strstr(log, "Incorrect"),
                  "iasl -d %s complained:\n%s", name, log);
    free(log);
    char *raw = tool_read_file(dir, dsl);
    ck_assert_msg(!strstr(raw, "Incorrect") && !strstr(raw, "Invalid") && !strstr(raw, "****"),
                  "%s.dsl flags a problem:\n%s", name, raw);
    char *text = tool_normalize(raw);
    free(raw);
    return text;
}

/* Compile name.dsl back to AML: zero errors, warnings and remarks. */
static void recompile(const char *name)
{
    char cmd[128], out[64];
    snprintf(cmd, sizeof(cmd), "iasl -p %s-again %s.dsl", name, name);
    snprintf(out, sizeof(out), "%s-again.log", name);
    int rc = tool_run(dir, cmd, out);
    char *log = tool_read_file(dir, out);
    ck_assert_msg(rc == 0 && strstr(log, "0 Errors, 0 Warnings, 0 Remarks"),
                  "iasl %s.dsl (%d):\n%s", name, rc, log);
    free(log);
}

#define ASSERT_HAS(text, needle)                                                                   \
    ck_assert_msg(strstr((text), (needle)) != NULL, "missing \"%s\" in:\n%.3000s", (needle), (text))
#define ASSERT_LACKS(text, needle)                                                                 \
    ck_assert_msg(strstr((text), (needle)) == NULL, "unexpected \"%s\" in:\n%.3000s", (needle),    \
                  (text))

START_TEST(iasl_decodes_every_table)
{
    struct vmm_machine m = fx_machine(fx.mem, 3);
    m.serial[1].gsi = 19; /* COM2 past the ISA IRQs: an Extended Interrupt */
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    dump_table(res.dsdt, "dsdt.dat");
    dump_table(res.fadt, "facp.dat");
    dump_table(res.madt, "apic.dat");
    dump_table(res.xsdt, "xsdt.dat");
    char want[256];

    char *dsdt = disassemble("dsdt");
    ASSERT_HAS(dsdt, "DefinitionBlock (\"\", \"DSDT\", 2, \"LIBVMM\", \"LVMMDSDT\", 0x00000001)");
    ASSERT_HAS(dsdt, "Scope (\\_SB) {");
    ASSERT_HAS(dsdt, "Device (COM1) { Name (_HID, EisaId (\"PNP0501\")) Name (_UID, One) "
                     "Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x01, "
                     "0x08,) IRQNoFlags () {4} }) }");
    ASSERT_HAS(dsdt, "Device (COM2) { Name (_HID, EisaId (\"PNP0501\")) Name (_UID, 0x02) "
                     "Name (_CRS, ResourceTemplate () { IO (Decode16, 0x02F8, 0x02F8, 0x01, "
                     "0x08,) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) "
                     "{ 0x00000013, } }) }");
    ASSERT_HAS(dsdt, "Device (RTC) { Name (_HID, EisaId (\"PNP0B00\")) Name (_CRS, "
                     "ResourceTemplate () { IO (Decode16, 0x0070, 0x0070, 0x01, 0x02,) }) }");
    ASSERT_HAS(dsdt, "Device (PS2K) { Name (_HID, EisaId (\"PNP0303\")) Name (_CRS, "
                     "ResourceTemplate () { IO (Decode16, 0x0060, 0x0060, 0x01, 0x01,) "
                     "IO (Decode16, 0x0064, 0x0064, 0x01, 0x01,) IRQNoFlags () {1} }) }");
    static const char *const gsis[3] = {"0x00000005", "0x00000006", "0x00000010"};
    for (unsigned i = 0; i < 3; i++) {
        snprintf(want, sizeof(want),
                 "Device (VR%02u) { Name (_HID, \"LNRO0005\") Name (_UID, %s) Name (_CRS, "
                 "ResourceTemplate () { Memory32Fixed (ReadWrite, 0x%08X, 0x00001000,) ",
                 i,
                 i == 0   ? "Zero"
                 : i == 1 ? "One"
                          : "0x02",
                 (unsigned)(VMM_X86_VIRTIO_MMIO_BASE + i * 0x1000));
        ASSERT_HAS(dsdt, want);
        snprintf(want, sizeof(want),
                 "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) { %s, } }) }",
                 gsis[i]);
        ASSERT_HAS(dsdt, want);
    }
    ASSERT_HAS(dsdt, "Name (\\_S5, Package (0x04) { 0x05, Zero, Zero, Zero })");
    free(dsdt);
    recompile("dsdt");

    char *apic = disassemble("apic");
    ck_assert_uint_eq(count_of(apic, "Subtable Type : 00 [Processor Local APIC]"), 3);
    for (unsigned i = 0; i < 3; i++) {
        snprintf(want, sizeof(want), "Local Apic ID : %02X [0", i);
        ASSERT_HAS(apic, want);
    }
    ck_assert_uint_eq(count_of(apic, "Processor Enabled : 1"), 3);
    ck_assert_uint_eq(count_of(apic, "[I/O APIC]"), 1);
    ASSERT_HAS(apic, "I/O Apic ID : 03");
    ASSERT_HAS(apic, "Address : FEC00000");
    ASSERT_HAS(apic, "Local Apic Address : FEE00000");
    ASSERT_HAS(apic, "PC-AT Compatibility : 0");
    ck_assert_uint_eq(count_of(apic, "[Interrupt Source Override]"), 1);
    ASSERT_HAS(apic, "Bus : 00 [053h 0083 1] Source : 00 [054h 0084 4] Interrupt : 00000002");
    ck_assert_uint_eq(count_of(apic, "[Local APIC NMI]"), 1);
    ASSERT_HAS(apic, "Interrupt Input LINT : 01");
    ck_assert_uint_eq(count_of(apic, "Subtable Type :"), 3 + 1 + 1 + 1);
    free(apic);
    recompile("apic");

    char *facp = disassemble("facp");
    ASSERT_HAS(facp, "Revision : 06");
    ASSERT_HAS(facp, "FADT Minor Revision : 05");
    ASSERT_HAS(facp, "Hardware Reduced (V5) : 1");
    ASSERT_HAS(facp, "Reset Register Supported (V2) : 1");
    ASSERT_HAS(facp, "8042 Present on ports 60/64 (V2) : 1");
    ASSERT_HAS(facp, "VGA Not Present (V4) : 1");
    ASSERT_HAS(facp, "MSI Not Supported (V4) : 1");
    ASSERT_HAS(facp, "CMOS RTC Not Present (V5) : 0");
    ASSERT_HAS(facp, "Reset Register : [Generic Address Structure] [074h 0116 1] Space ID : 01 "
                     "[SystemIO] [075h 0117 1] Bit Width : 08 [076h 0118 1] Bit Offset : 00 "
                     "[077h 0119 1] Encoded Access Width : 01 [Byte Access:8] [078h 0120 8] "
                     "Address : 00000000000003C1");
    ASSERT_HAS(facp, "Value to cause reset : 01");
    ASSERT_HAS(facp, "Sleep Control Register : [Generic Address Structure] [0F4h 0244 1] Space "
                     "ID : 01 [SystemIO] [0F5h 0245 1] Bit Width : 08 [0F6h 0246 1] Bit Offset : "
                     "00 [0F7h 0247 1] Encoded Access Width : 01 [Byte Access:8] [0F8h 0248 8] "
                     "Address : 00000000000003C0");
    ASSERT_HAS(facp, "Sleep Status Register : [Generic Address Structure] [100h 0256 1] Space "
                     "ID : 01 [SystemIO]");
    snprintf(want, sizeof(want), "[08Ch 0140 8] DSDT Address : %016llX",
             (unsigned long long)res.dsdt);
    ASSERT_HAS(facp, want);
    ASSERT_HAS(facp, "Hypervisor ID : 00004D4D5642494C"); /* "LIBVMM" */
    free(facp);

    char *xsdt = disassemble("xsdt");
    snprintf(want, sizeof(want), "ACPI Table Address 0 : %016llX", (unsigned long long)res.fadt);
    ASSERT_HAS(xsdt, want);
    snprintf(want, sizeof(want), "ACPI Table Address 1 : %016llX", (unsigned long long)res.madt);
    ASSERT_HAS(xsdt, want);
    ASSERT_LACKS(xsdt, "ACPI Table Address 2");
    free(xsdt);
}
END_TEST

START_TEST(iasl_sees_a_bare_machine)
{
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .nr_vcpus = 1};
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    dump_table(res.dsdt, "dsdt.dat");
    dump_table(res.fadt, "facp.dat");
    dump_table(res.madt, "apic.dat");

    char *dsdt = disassemble("dsdt");
    ASSERT_HAS(dsdt, "Scope (\\_SB) { }");
    ASSERT_LACKS(dsdt, "Device");
    ASSERT_LACKS(dsdt, "_S5");
    free(dsdt);
    recompile("dsdt");

    char *facp = disassemble("facp");
    ASSERT_HAS(facp, "Hardware Reduced (V5) : 1");
    ASSERT_HAS(facp, "Reset Register Supported (V2) : 0");
    ASSERT_HAS(facp, "8042 Present on ports 60/64 (V2) : 0");
    ASSERT_HAS(facp, "CMOS RTC Not Present (V5) : 1");
    free(facp);

    char *apic = disassemble("apic");
    ck_assert_uint_eq(count_of(apic, "[Processor Local APIC]"), 1);
    ASSERT_HAS(apic, "I/O Apic ID : 01");
    free(apic);
}
END_TEST

/* ACPICA's interpreter (acpiexec, same package) loads the DSDT, evaluates
 * the objects Linux evaluates and decodes every _CRS with the resource
 * manager Linux uses. (Its round-trip comparison reports the End Tag: it
 * regenerates a zero checksum where the tables carry the computed one; both
 * are valid.) */
START_TEST(acpiexec_evaluates_the_namespace)
{
    if (!tool_available("acpiexec")) {
        printf("acpiexec is not installed: namespace test not run\n");
        return;
    }
    struct vmm_machine m = fx_machine(fx.mem, 2);
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    dump_table(res.dsdt, "dsdt.dat");
    int rc = tool_run(dir,
                      "acpiexec -b 'evaluate \\_SB.VR02._HID; evaluate \\_SB.VR02._UID; "
                      "evaluate \\_S5; evaluate \\_SB.COM2._HID; resources \\_SB.VR02; "
                      "resources \\_SB.COM2; resources \\_SB.PS2K' dsdt.dat",
                      "exec.log");
    char *raw = tool_read_file(dir, "exec.log");
    ck_assert_msg(rc == 0, "acpiexec (%d):\n%s", rc, raw);
    char *log = tool_normalize(raw);
    free(raw);
    ASSERT_HAS(log, "Table [DSDT: LVMMDSDT] (id 01) - 27 Objects with 7 Devices");
    ASSERT_HAS(log, "Evaluation of \\_SB.VR02._HID returned object");
    ASSERT_HAS(log, "[String] Length 08 = \"LNRO0005\"");
    ASSERT_HAS(log, "Evaluating \\_SB.VR02._UID Evaluation of \\_SB.VR02._UID returned object");
    ASSERT_HAS(log, "[Integer] = 0000000000000002");
    ASSERT_HAS(log, "[Package] Contains 4 Elements: [Integer] = 0000000000000005 "
                    "[Integer] = 0000000000000000 [Integer] = 0000000000000000 "
                    "[Integer] = 0000000000000000");
    ASSERT_HAS(log, "[Integer] = 000000000105D041"); /* PNP0501 */
    ASSERT_HAS(log, "[00] 32-Bit Fixed Memory Range Resource Write Protect : ReadWrite "
                    "Address : D0002000 Address Length : 00001000 [01] Extended IRQ Resource "
                    "Type : ResourceConsumer Triggering : Edge Polarity : ActiveHigh Sharing : "
                    "Exclusive Resource Source Index : 00 Resource Source : [Not Specified] "
                    "Interrupt Count : 01 Dword00 : 00000010 [02] EndTag Resource");
    ASSERT_HAS(log, "[00] I/O Resource Address Decoding : Decode16 Address Minimum : 02F8 "
                    "Address Maximum : 02F8 Alignment : 01 Address Length : 08 [01] IRQ "
                    "Resource Descriptor Length : 02 Triggering : Edge Polarity : ActiveHigh "
                    "Sharing : Exclusive Interrupt Count : 01 Interrupt List : 3 [02] EndTag");
    ASSERT_HAS(log, "Address Minimum : 0064");
    ASSERT_HAS(log, "Interrupt List : 1");
    ASSERT_LACKS(log, "AE_AML");
    ASSERT_LACKS(log, "Could not");
    free(log);
}
END_TEST

/* A PCI root complex: the MCFG table, the host bridge's _CRS windows and
 * _PRT, and the ECAM reserved as a motherboard resource, through iasl and
 * ACPICA's resource manager. */
START_TEST(iasl_decodes_the_pci_host_bridge)
{
    struct vmm_machine m = fx_machine(fx.mem, 1);
    m.pci = (struct vmm_machine_pci){
        .present = true,
        .ecam_base = 0xe0000000,
        .mmio32_base = 0xc0000000,
        .mmio32_size = 0x10000000,
        .mmio64_base = 0x100000000ull,
        .mmio64_size = 0x1000000000ull,
        .io_base = 0xc000,
        .io_size = 0x4000,
        .intx_gsi = {16, 17, 18, 19},
    };
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    ck_assert_uint_ne(res.mcfg, 0);
    dump_table(res.dsdt, "dsdt.dat");
    dump_table(res.mcfg, "mcfg.dat");
    dump_table(res.xsdt, "xsdt.dat");
    dump_table(res.fadt, "facp.dat");
    char want[160];

    /* With PCI the guest may use MSI (Linux disables it when the FADT says no). */
    char *facp = disassemble("facp");
    ASSERT_HAS(facp, "MSI Not Supported (V4) : 0");
    free(facp);

    char *mcfg = disassemble("mcfg");
    ASSERT_HAS(mcfg, "Signature : \"MCFG\"");
    ASSERT_HAS(mcfg, "Base Address : 00000000E0000000");
    ASSERT_HAS(mcfg, "Segment Group Number : 0000");
    ASSERT_HAS(mcfg, "Start Bus Number : 00");
    ASSERT_HAS(mcfg, "End Bus Number : 00");
    free(mcfg);
    recompile("mcfg");

    char *xsdt = disassemble("xsdt");
    snprintf(want, sizeof(want), "ACPI Table Address 2 : %016llX", (unsigned long long)res.mcfg);
    ASSERT_HAS(xsdt, want);
    free(xsdt);

    char *dsdt = disassemble("dsdt");
    ASSERT_HAS(dsdt, "Device (PCI0) { Name (_HID, EisaId (\"PNP0A08\")) Name (_CID, EisaId "
                     "(\"PNP0A03\")) Name (_SEG, Zero) Name (_BBN, Zero) Name (_UID, Zero)");
    ASSERT_HAS(dsdt, "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, "
                     "0x0000, 0x0000, 0x0000, 0x0001, ,,)");
    ASSERT_HAS(dsdt, "IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08,)");
    ASSERT_HAS(dsdt, "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, "
                     "0x0000, 0xC000, 0xFFFF, 0x0000, 0x4000, ,, , TypeStatic, DenseTranslation)");
    ASSERT_HAS(dsdt, "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, "
                     "NonCacheable, ReadWrite, 0x00000000, 0xC0000000, 0xCFFFFFFF, 0x00000000, "
                     "0x10000000, ,, , AddressRangeMemory, TypeStatic)");
    ASSERT_HAS(dsdt, "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, "
                     "NonCacheable, ReadWrite, 0x0000000000000000, 0x0000000100000000, "
                     "0x00000010FFFFFFFF, 0x0000000000000000, 0x0000001000000000, ,, , "
                     "AddressRangeMemory, TypeStatic)");
    ASSERT_HAS(dsdt, "Name (_PRT, Package (0x7C) { Package (0x04) { 0x0001FFFF, Zero, Zero, "
                     "0x11 }, Package (0x04) { 0x0001FFFF, One, Zero, 0x12 },");
    ASSERT_HAS(dsdt, "Package (0x04) { 0x001FFFFF, 0x03, Zero, 0x12 } }) }");
    ASSERT_HAS(dsdt, "Device (RES0) { Name (_HID, EisaId (\"PNP0C02\")) Name (_CRS, "
                     "ResourceTemplate () { QWordMemory (ResourceProducer, PosDecode, MinFixed, "
                     "MaxFixed, NonCacheable, ReadWrite, 0x0000000000000000, 0x00000000E0000000, "
                     "0x00000000E00FFFFF, 0x0000000000000000, 0x0000000000100000, ,, , "
                     "AddressRangeMemory, TypeStatic) }) }");
    free(dsdt);
    recompile("dsdt");

    if (tool_available("acpiexec")) {
        int rc =
            tool_run(dir, "acpiexec -b 'evaluate \\_SB.PCI0._HID; resources \\_SB.PCI0' dsdt.dat",
                     "exec.log");
        char *raw = tool_read_file(dir, "exec.log");
        ck_assert_msg(rc == 0, "acpiexec (%d):\n%s", rc, raw);
        char *log = tool_normalize(raw);
        free(raw);
        ASSERT_HAS(log, "[Integer] = 00000000080AD041"); /* PNP0A08 */
        ASSERT_HAS(log, "Address Minimum : 0000000100000000");
        ASSERT_LACKS(log, "AE_AML");
        ASSERT_LACKS(log, "Could not");
        free(log);
    }
}
END_TEST

/* The check itself works: a table with a broken checksum is flagged. */
START_TEST(iasl_flags_a_bad_checksum)
{
    struct vmm_machine m = {.size = sizeof(struct vmm_machine), .nr_vcpus = 2};
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    fx.ram[res.madt + 9]++;
    dump_table(res.madt, "apic.dat");
    ck_assert_int_eq(tool_run(dir, "iasl -d apic.dat", "apic.log"), 0);
    char *raw = tool_read_file(dir, "apic.dsl");
    ASSERT_HAS(raw, "Incorrect checksum");
    free(raw);
}
END_TEST

/* The VM generation ID and the Generic Event Device through iasl, then
 * through ACPICA's interpreter: ADDR evaluates to the ID's address, split
 * as Linux's vmgenid driver reads it, and _EVT with the GED's GSI (what
 * Linux's GED driver passes) notifies VGEN with 0x80, any other does not. */
START_TEST(iasl_decodes_the_vmgenid_and_its_event_device)
{
    struct vmm_machine m = fx_machine(fx.mem, 1);
    m.vmgenid_addr = 0x1234567800ull; /* above 4 GiB: both halves of ADDR */
    m.vmgenid_gsi = 9;
    struct vmm_acpi_result res = VMM_INIT(struct vmm_acpi_result);
    ck_assert_int_gt(vmm_acpi_write(fx.mem, &m, NULL, &res), 0);
    dump_table(res.dsdt, "dsdt.dat");

    char *dsdt = disassemble("dsdt");
    ASSERT_HAS(dsdt, "Device (VGEN) { Name (_HID, \"LVMM0001\") Name (_CID, \"VM_GEN_COUNTER\") "
                     "Name (_DDN, \"VM_Gen_Counter\") Name (ADDR, Package (0x02) { 0x34567800, "
                     "0x12 }) }");
    ASSERT_HAS(dsdt, "Device (GED0) { Name (_HID, \"ACPI0013\") Name (_UID, Zero) Name (_CRS, "
                     "ResourceTemplate () { Interrupt (ResourceConsumer, Edge, ActiveHigh, "
                     "Exclusive, ,,) { 0x00000009, } }) Method (_EVT, 1, Serialized) { If ((Arg0 "
                     "== 0x09)) { Notify (VGEN, 0x80) } } }");
    free(dsdt);
    recompile("dsdt");

    if (!tool_available("acpiexec")) {
        printf("acpiexec is not installed: _EVT not evaluated\n");
        return;
    }
    int rc = tool_run(dir,
                      "acpiexec -b 'evaluate \\_SB.VGEN.ADDR; evaluate \\_SB.VGEN._CID; "
                      "evaluate \\_SB.GED0._EVT 8; evaluate \\_SB.GED0._EVT 9' dsdt.dat",
                      "exec.log");
    char *raw = tool_read_file(dir, "exec.log");
    ck_assert_msg(rc == 0, "acpiexec (%d):\n%s", rc, raw);
    char *log = tool_normalize(raw);
    free(raw);
    ASSERT_HAS(log, "[Package] Contains 2 Elements: [Integer] = 0000000034567800 "
                    "[Integer] = 0000000000000012");
    ASSERT_HAS(log, "\"VM_GEN_COUNTER\"");
    ck_assert_uint_eq(count_of(log, "Notify on"), 1);
    ASSERT_HAS(log, "Received a Device Notify on [VGEN]");
    ASSERT_HAS(log, "Value 0x80 (Status Change) No object was returned from evaluation of "
                    "\\_SB.GED0._EVT ACPI:");
    ASSERT_LACKS(log, "AE_AML");
    free(log);
}
END_TEST

static Suite *iasl_suite(void)
{
    Suite *s = suite_create("acpi_iasl");
    TCase *tc = tcase_create("iasl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, iasl_decodes_every_table);
    tcase_add_test(tc, iasl_sees_a_bare_machine);
    tcase_add_test(tc, acpiexec_evaluates_the_namespace);
    tcase_add_test(tc, iasl_decodes_the_pci_host_bridge);
    tcase_add_test(tc, iasl_flags_a_bad_checksum);
    tcase_add_test(tc, iasl_decodes_the_vmgenid_and_its_event_device);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tool_require("iasl", "acpica-tools");
    return vmm_test_run_suite(iasl_suite());
}
