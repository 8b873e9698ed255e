#!/usr/bin/env python3
# Write the seed corpora in fuzz/corpus/<target>/: small programs in each
# target's input language (see the op enums in fuzz_*.c) that reach the
# interesting states at once, and for the loader stripped copies of the test
# guests (static ELF, ELF vmlinux with a PVH note, bzImage).
#   fuzz/make-seeds.py BUILD_DIR   (a normal build: its tests/guests/*.elf)
import os
import struct
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


u8 = lambda v: struct.pack("<B", v)
u16 = lambda v: struct.pack("<H", v)
u32 = lambda v: struct.pack("<I", v)
u64 = lambda v: struct.pack("<Q", v)

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4

# ---- fuzz_virtq: cfg, desc/avail/used offsets, then ops ----
(V_MEMWRITE, V_DESC, V_AVAIL, V_AVAIL_IDX, V_POP, V_PUSH, V_FREE, V_READ, V_WRITE, V_IOV,
 V_NOTIFY, V_RESET, V_FLAGS, V_DRAIN) = range(14)


def vdesc(slot, addr, length, flags, nxt, anywhere=False):
    return u8(V_DESC) + u16(slot) + u8(1 if anywhere else 0) + u16(addr) + u16(length) + \
        u8(flags) + u16(nxt)


def vhead(cfg):
    return u8(cfg) + u16(0x0000) + u16(0x1000) + u16(0x2000)


direct = vhead(4) + vdesc(0, 0x8000, 64, F_NEXT, 1) + vdesc(1, 0x9000, 64, F_WRITE, 0) + \
    u8(V_AVAIL) + u16(0) + u8(V_POP) + u8(V_READ) + u8(0) + u32(0) + u16(64) + \
    u8(V_WRITE) + u8(0) + u32(0) + u16(64) + u8(V_IOV) + u8(0) + u8(0x1f) + u32(0) + u32(128) + \
    u8(V_PUSH) + u8(0) + u32(64) + u8(V_NOTIFY)
write("fuzz_virtq", "direct", direct)
indirect = vhead(4 | 0x40) + vdesc(0x400, 0x8000, 16, F_NEXT, 1, True) + \
    vdesc(0x401, 0x9000, 16, F_WRITE, 0, True) + vdesc(0, 0x4000, 32, F_INDIRECT, 0) + \
    u8(V_AVAIL) + u16(0) + u8(V_DRAIN)
write("fuzz_virtq", "indirect", indirect)
# EVENT_IDX, a buffer across the two regions, chains held over a reset.
straddle = vhead(3 | 0x80) + vdesc(0, 0x7ff0, 0x20, F_WRITE, 0) + u8(V_AVAIL) + u16(0) + \
    u8(V_POP) + u8(V_IOV) + u8(0) + u8(0x1f) + u32(0) + u32(0x20) + u8(V_FLAGS) + u8(0) + \
    u16(1) + u8(V_RESET) + u8(0) + u8(V_PUSH) + u8(0) + u32(0x20) + u8(V_AVAIL) + u16(0) + \
    u8(V_DRAIN)
write("fuzz_virtq", "event-idx-straddle", straddle)

# ---- fuzz_virtio_mmio: cfg (device, loop), fuzz_mmio.h's language, then its own ops ----
# (FM_* and fm_setup are fuzz_mmio.h's, as for fuzz_net below; the numbers repeat here because
# this target's seeds come first.)
(MF_MEMWRITE, MF_DESC, MF_AVAIL, MF_REG_WRITE, MF_REG_READ, MF_SETUP, MF_KICK, MF_LOOP,
 MF_RESET, MF_CHAIN) = range(10)
M_INPUT, M_BLK_REQ = 10, 11


def msetup(size_log):
    return u8(MF_SETUP) + u64(0xffffffffffffffff) + u8(0) + u8(size_log)


def mdesc(q, slot, off, length, flags, nxt=0):
    """off: from the start of guest memory"""
    return u8(MF_DESC) + u16(slot) + u8(q << 3) + u32(off) + u16(length) + u8(flags) + u16(nxt)


def mavail(q, head):
    return u8(MF_AVAIL) + u8(q) + u16(head)


def mmemwrite(off, data):
    return u8(MF_MEMWRITE) + u32(off) + u8(len(data)) + data


def blkreq(first, rtype, sector, sectors):
    return u8(M_BLK_REQ) + u8(first) + u8(rtype) + u16(sector) + u8(sectors)


loops = u8(MF_LOOP) * 3
for cfg, name in ((0, "blk-loop"), (0x80, "blk-noloop")):
    prog = u8(cfg) + msetup(4) + blkreq(0, 1, 3, 2) + loops + blkreq(3, 0, 3, 2) + loops + \
        blkreq(6, 4, 0, 0) + loops + blkreq(9, 8, 0, 1) + loops + u8(MF_RESET) + msetup(4) + \
        blkreq(0, 0, 0, 1) + loops
    write("fuzz_virtio_mmio", name, prog)
# Discard and write-zeroes: a 16-byte segment record after the header.
dwz = u8(0) + msetup(4) + mmemwrite(0x18010, u64(8) + u32(8) + u32(0)) + \
    mdesc(0, 0, 0x18000, 32, F_NEXT, 1) + mdesc(0, 1, 0x18020, 1, F_WRITE) + mavail(0, 0) + \
    mmemwrite(0x18000, u32(13) + u32(0) + u64(0)) + u8(MF_KICK) + u8(0) + loops
write("fuzz_virtio_mmio", "blk-write-zeroes", dwz)
console = u8(1) + msetup(3) + u8(M_INPUT) + u8(6) + b"hello\n" + loops + \
    mdesc(0, 0, 0x19000, 64, F_WRITE) + mavail(0, 0) + u8(MF_KICK) + u8(0) + loops + \
    mmemwrite(0x19100, b"hi\n") + mdesc(1, 0, 0x19100, 3, 0) + mavail(1, 0) + \
    u8(MF_KICK) + u8(1) + loops
write("fuzz_virtio_mmio", "console", console)
rng = u8(2) + msetup(4) + mdesc(0, 0, 0x19000, 64, F_WRITE) + mavail(0, 0) + u8(MF_KICK) + \
    u8(0) + loops
write("fuzz_virtio_mmio", "rng", rng)
write("fuzz_virtio_mmio", "rng-limited", u8(0x12) + rng[1:])
# Raw register traffic: every register read once, config space included.
regs = u8(0)
for off in list(range(0, 0x100, 4)) + [0x100, 0x108, 0x110]:
    regs += u8(MF_REG_READ) + u16(off) + u8(2)
write("fuzz_virtio_mmio", "registers", regs)

# ---- fuzz_pio: op, offset, width, value ----
(P_UART_READ, P_UART_WRITE, P_UART_RECEIVE, P_IOAPIC_READ, P_IOAPIC_WRITE, P_IOAPIC_LINE,
 P_IOAPIC_EOI, P_RTC_READ, P_RTC_WRITE, P_I8042_READ, P_I8042_WRITE, P_PM_WRITE, P_PM_READ) = \
    range(13)


def p(op, off, width_code, value=0):
    return u8(op) + u8(off) + u8(width_code) + u64(value)


uart = p(P_UART_WRITE, 3, 0, 0x80) + p(P_UART_WRITE, 0, 0, 1) + p(P_UART_WRITE, 3, 0, 3) + \
    p(P_UART_WRITE, 1, 0, 0x0f) + p(P_UART_WRITE, 4, 0, 0x08) + p(P_UART_WRITE, 2, 0, 0xc7) + \
    p(P_UART_WRITE, 0, 0, 0x41) + p(P_UART_READ, 2, 0) + p(P_UART_RECEIVE, 0, 2, 0x64636261) + \
    p(P_UART_READ, 5, 0) + p(P_UART_READ, 0, 0) + p(P_UART_READ, 2, 0) + \
    p(P_UART_WRITE, 4, 0, 0x18) + p(P_UART_WRITE, 0, 0, 0x42) + p(P_UART_READ, 0, 0)
write("fuzz_pio", "uart", uart)
ioapic = p(P_IOAPIC_WRITE, 0, 2, 0x10) + p(P_IOAPIC_WRITE, 0x10, 2, 0x8030) + \
    p(P_IOAPIC_WRITE, 0, 2, 0x11) + p(P_IOAPIC_WRITE, 0x10, 2, 0) + \
    p(P_IOAPIC_LINE, 0, 0, 1) + p(P_IOAPIC_EOI, 0, 0, 0x30) + p(P_IOAPIC_LINE, 0, 0, 0) + \
    p(P_IOAPIC_WRITE, 0, 2, 0x12) + p(P_IOAPIC_WRITE, 0x10, 2, 0x31) + p(P_IOAPIC_LINE, 1, 0, 1) + \
    p(P_IOAPIC_WRITE, 0, 2, 1) + p(P_IOAPIC_READ, 0x10, 2)
write("fuzz_pio", "ioapic", ioapic)
rtc = b""
for reg in (0x0a, 0x0b, 0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x0c, 0x0d):
    rtc += p(P_RTC_WRITE, 0, 0, reg) + p(P_RTC_READ, 1, 0)
rtc += p(P_RTC_WRITE, 0, 0, 0x0b) + p(P_RTC_WRITE, 1, 0, 0x86) + p(P_RTC_WRITE, 0, 0, 0x00) + \
    p(P_RTC_WRITE, 1, 0, 0x59) + p(P_RTC_WRITE, 0, 0, 0x0b) + p(P_RTC_WRITE, 1, 0, 0x06)
write("fuzz_pio", "rtc", rtc)
write("fuzz_pio", "reset-lines", p(P_I8042_READ, 1, 0) + p(P_I8042_WRITE, 1, 0, 0xfe) +
      p(P_PM_WRITE, 0, 0, 0x34) + p(P_PM_WRITE, 1, 0, 0x06))

# ---- fuzz_loader: mode byte, then the loader's header and the image ----
if len(sys.argv) > 1:
    guests = os.path.join(sys.argv[1], "tests", "guests")

    def stripped(name):
        out = os.path.join(here, "corpus", ".tmp-" + name)
        subprocess.run(["strip", "-o", out, os.path.join(guests, name)], check=True)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data

    write("fuzz_loader", "elf-hello", u8(0) + u8(0) + stripped("hello.elf"))
    # Linux: flags (reserved range, cmdline), initrd length, cmdline, dtb.
    cmd = b"console=ttyS0 quiet"
    linux_head = u8(1) + u8(0x40 | 1) + u32(0xf0000) + u32(0x1000) + u16(4096) + \
        u8(len(cmd)) + cmd + u8(8) + b"\xd0\x0d\xfe\xed\x00\x00\x00\x08"
    with open(os.path.join(guests, "linux_boot.bzImage"), "rb") as f:
        write("fuzz_loader", "linux-bzimage", linux_head + f.read())
    write("fuzz_loader", "linux-pvh-elf", linux_head + stripped("linux_boot.elf"))
    # The bzImage carrying the ELF as an XZ payload, extracted (the initrd length's top bit).
    xz_head = u8(1) + u8(0x40 | 1) + u32(0xf0000) + u32(0x1000) + u16(0x8000 | 4096) + \
        u8(len(cmd)) + cmd + u8(8) + b"\xd0\x0d\xfe\xed\x00\x00\x00\x08"
    with open(os.path.join(guests, "linux_boot_xz.bzImage"), "rb") as f:
        write("fuzz_loader", "linux-bzimage-xz", xz_head + f.read())
    write("fuzz_loader", "linux-elf-no-pvh",
          u8(1) + u8(0x40 | 4) + u16(0) + u8(0) + u8(0) + stripped("linux_boot.elf"))

# ---- fuzz_options: vmm-run's arguments, NUL-separated ----
def argv(*args):
    return b"\0".join(a.encode() for a in args)


write("fuzz_options", "kernel-cache", argv("--kernel", "bzImage", "--kernel-cache", "cache",
                                           "--cmdline", "console=ttyS0"))
write("fuzz_options", "boot", argv("--kernel", "vmlinux", "--initrd", "initrd", "--cmdline",
                                   "console=ttyS0", "-m", "256M", "-c", "2", "--boot", "linux"))
write("fuzz_options", "devices", argv("-k", "g.elf", "--disk", "a.img,ro,direct", "--disk",
                                      "b,x.img,rw", "--net", "tap=t0,mac=52:54:00:12:34:56,"
                                      "mtu=9000,queues=2,vhost=off", "--balloon=target=64M,stats,"
                                      "reporting,deflate-on-oom", "--rng", "--transport", "pci",
                                      "--console", "virtio"))
write("fuzz_options", "machine", argv("-k", "g", "--irqchip", "kernel", "--cpu-disable",
                                      "xsave,avx", "--cpu-disable", "kvmclock", "--on-reboot",
                                      "restart", "--seccomp", "log", "-vv"))
write("fuzz_options", "snapshot", argv("--restore", "snap", "--restore-memory", "uffd",
                                       "--save", "out", "--snapshot-on", "USR2", "--api-sock",
                                       "/run/vmm.sock", "--disk", "d.img"))
write("fuzz_options", "migrate", argv("--migrate-listen", "tcp:127.0.0.1:4444", "--console",
                                      "log.txt"))
write("fuzz_options", "errors", argv("-kv", "-x", "--mem", "1X", "--net", "tap=a,tap=b",
                                     "--vcpus"))

# ---- fuzz_net, fuzz_balloon: fuzz_mmio.h's language, then the target's ops ----
(FM_MEMWRITE, FM_DESC, FM_AVAIL, FM_REG_WRITE, FM_REG_READ, FM_SETUP, FM_KICK, FM_LOOP, FM_RESET,
 FM_CHAIN) = range(10)
FM_OP_COUNT = 10


def fm_setup(features, skip=0, size_log=4):
    return u8(FM_SETUP) + u64(features) + u8(skip) + u8(size_log)


def fm_chain(q, first, segs, off=0):
    """segs: (length, writable, leading bytes)"""
    out = u8(FM_CHAIN) + u8(q) + u8(first) + u8(len(segs) - 1) + u16(off)
    for length, writable, head in segs:
        out += u16(length) + u8(1 if writable else 0) + u8(len(head)) + head
    return out


NET_F_CSUM, NET_F_MTU, NET_F_MAC, NET_F_HOST_TSO4 = 1 << 0, 1 << 3, 1 << 5, 1 << 11
NET_F_MRG_RXBUF, NET_F_STATUS, NET_F_CTRL_VQ, NET_F_MQ = 1 << 15, 1 << 16, 1 << 17, 1 << 22
N_RX, N_LINK, N_STATS = FM_OP_COUNT, FM_OP_COUNT + 1, FM_OP_COUNT + 2
eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x02" + b"\x88\xb5" + b"hello"
vhdr = bytes(12)
net_feat = NET_F_CSUM | NET_F_MAC | NET_F_MRG_RXBUF | NET_F_STATUS | NET_F_HOST_TSO4
good = fm_setup(net_feat) + fm_chain(1, 0, [(12 + 64, 0, vhdr + eth)]) + \
    fm_chain(0, 0, [(12, 1, b""), (1514, 1, b"")], 0x100) + u8(N_RX) + u16(60) + u8(5) + \
    b"world" + u8(FM_LOOP) + u8(FM_LOOP) + u8(N_STATS)
write("fuzz_net", "tx-rx", u8(0) + good)
write("fuzz_net", "tx-rx-mtu-small-queue", u8(2 | 4) + good)
# Offload header (NEEDS_CSUM, GSO TCPv4), fragmented over 4 buffers.
csum = u8(1) + u8(1) + u16(0) + u16(54) + u16(34) + u16(16) + u16(0)
write("fuzz_net", "tx-offload", u8(0) + fm_setup(net_feat) +
      fm_chain(1, 0, [(20, 0, csum + eth[:8]), (6, 0, eth[8:]), (40, 0, b""), (1400, 0, b"")]) +
      u8(FM_LOOP) + u8(N_STATS))
# Two pairs: the control queue switches to both, then traffic on pair 1.
# (Notifications reach the device on the loop's turn: every chain has its own buffers.)
mq = u8(1) + fm_setup(net_feat | NET_F_CTRL_VQ | NET_F_MQ) + \
    fm_chain(4, 0, [(2, 0, u8(4) + u8(0)), (2, 0, u16(2)), (1, 1, b"")]) + u8(FM_LOOP) + \
    fm_chain(3, 0, [(12 + 64, 0, vhdr + eth)], 0x100) + \
    fm_chain(2, 0, [(2048, 1, b"")], 0x800) + \
    u8(N_RX) + u16(100) + u8(0) + u8(FM_LOOP) + u8(N_LINK) + u8(0) + \
    fm_chain(1, 0, [(12 + 64, 0, vhdr + eth)], 0x2000) + u8(FM_LOOP) + u8(N_LINK) + u8(1) + \
    u8(FM_LOOP) + u8(N_STATS)
write("fuzz_net", "multiqueue-ctrl", mq)
# Hostile shapes: short header, writable tx buffer, oversize frame.
write("fuzz_net", "tx-hostile", u8(0) + fm_setup(net_feat) + fm_chain(1, 0, [(6, 0, b"")]) +
      fm_chain(1, 1, [(12, 0, vhdr), (64, 1, eth)], 0x100) +
      fm_chain(1, 3, [(65535, 0, vhdr), (65535, 0, b""), (100, 0, b"")], 0x200) + u8(FM_LOOP) +
      u8(N_STATS) + u8(FM_RESET) + u8(N_STATS))
write("fuzz_net", "rate-limited", u8(8) + good)
B_TARGET, B_REQ, B_STATS = FM_OP_COUNT, FM_OP_COUNT + 1, FM_OP_COUNT + 2
B_F_STATS, B_F_DEFLATE_ON_OOM, B_F_REPORTING = 1 << 1, 1 << 2, 1 << 5
bfeat = B_F_STATS | B_F_DEFLATE_ON_OOM | B_F_REPORTING
DATA = 0x10000 + 5 * 0x3000
pfn = lambda gpa: u32(gpa >> 12)
pfns = b"".join(pfn(0x30000 + 0x1000 * i) for i in range(8))
balloon = fm_setup(bfeat) + fm_chain(0, 0, [(len(pfns), 0, pfns)]) + \
    fm_chain(1, 0, [(8, 0, pfns[:8])], 0x100) + \
    fm_chain(2, 0, [(40, 0, u16(0) + u64(123) + u16(4) + u64(456) + u16(99) + u64(1))], 0x200) + \
    u8(B_REQ) + u8(FM_LOOP) + u8(B_TARGET) + u64(1 << 24) + \
    fm_chain(3, 0, [(0x2000, 1, b"")], 0x4000) + u8(B_STATS)
write("fuzz_balloon", "all-queues", u8(1 | 2 | 4) + u16(64) + balloon)
write("fuzz_balloon", "no-loop", u8(0x80 | 1 | 2 | 8) + u16(0) + balloon)
# The guest balloons its own inflate ring and pages outside memory.
own = b"".join(pfn(0x10000 + 0x1000 * i) for i in range(3)) + u32(0xffffffff) + u32(0)
write("fuzz_balloon", "own-rings", u8(0) + u16(1) + fm_setup(0) +
      fm_chain(0, 0, [(len(own), 0, own)]) + fm_chain(0, 1, [(4, 0, pfn(0x20000))], 0x100) +
      u8(FM_REG_WRITE) + u16(0x104) + u8(2) + u64(7) + u8(B_STATS))

# ---- fuzz_pci: cfg (bit 0 model MSI-X, 1 model MSI, 2 loop, 3 console), then ops ----
(PC_CF8, PC_CFC, PC_ECAM_W, PC_ECAM_R, PC_BAR_W, PC_BAR_R, PC_RAW_MMIO, PC_RAW_PIO, PC_SIZE_BAR,
 PC_MSIX, PC_MSI, PC_INTX, PC_VSETUP, PC_RNG, PC_LOOP) = range(15)


def ecam_r(slot, reg, w=2):
    return u8(PC_ECAM_R) + u8(slot) + u16(reg) + u8(w)


def ecam_w(slot, reg, value, w=2):
    return u8(PC_ECAM_W) + u8(slot) + u16(reg) + u8(w) + u64(value)


# Slot 0 stays empty; the model is in slot 1, the virtio function in slot 2.
walk = b""
for slot in (0, 1, 2):
    walk += u8(PC_CF8) + u8(slot) + u16(0) + u8(0) + u8(PC_CFC) + u8(4) + u8(2) + u32(0) + u8(0)
    for reg in range(0, 0x100, 4):
        walk += ecam_r(slot, reg)
write("fuzz_pci", "config-walk", u8(3) + walk)
sizing = b""
for bar in range(6):
    for slot_bit in (0, 1):
        sizing += u8(PC_SIZE_BAR) + u8(slot_bit | bar << 1) + u32(0)
        sizing += u8(PC_SIZE_BAR) + u8(slot_bit | bar << 1 | 0x80) + u32(0xd0000000 + bar * 0x10000)
sizing += u8(PC_BAR_W) + u8(0) + u8(2) + u32(0x10) + u64(0x1234) + u8(PC_BAR_R) + u8(2) + u8(1) + \
    u32(4) + u64(0)
write("fuzz_pci", "bar-sizing", u8(3) + sizing)
# Model: MSI-X on (capability walk found by the fuzzer from here), table writes, notify.
msix = ecam_r(1, 0x34, 0) + b"".join(ecam_r(1, r) for r in range(0x40, 0x80, 4)) + \
    ecam_w(1, 4, 7) + u8(PC_BAR_W) + u8(0) + u8(2) + u32(0) + u64(0xfee00000) + \
    u8(PC_BAR_W) + u8(0) + u8(2) + u32(8) + u64(0x30) + u8(PC_BAR_W) + u8(0) + u8(2) + u32(12) + \
    u64(0) + u8(PC_MSIX) + u8(0) + u16(0) + u8(PC_MSI) + u8(1) + u8(PC_INTX) + u8(2) + \
    u8(PC_INTX) + u8(0)
write("fuzz_pci", "model-msix", u8(3) + msix)
virtio = u8(PC_VSETUP) + u64(0) + u8(4) + u8(1) + u16(0) + u8(PC_RNG) + u16(64) + u8(PC_LOOP) + \
    u8(PC_RNG) + u16(4096) + u8(PC_LOOP) + u8(PC_BAR_R) + u8(1) + u8(0) + u32(0x1000) + u64(0) + \
    u8(PC_BAR_R) + u8(1) + u8(2) + u32(0x14) + u64(0) + u8(PC_MSIX) + u8(1) + u16(1)
write("fuzz_pci", "virtio-rng-loop", u8(4) + virtio)
write("fuzz_pci", "virtio-rng-vcpu", u8(0) + virtio)
write("fuzz_pci", "virtio-console", u8(8 | 4) + virtio)

# ---- fuzz_snapshot: mode (bit 0: seal the rest as a body), then the file ----
import zlib


def snap_tag(s):
    return struct.unpack("<I", s.encode())[0]


def section(tag, instance, payload):
    pad = (8 - len(payload) % 8) % 8
    return u32(snap_tag(tag)) + u32(instance) + u64(len(payload)) + payload + bytes(pad)


def sealed(body):
    head = b"LIBVMMSN" + u32(1) + u32(32) + u64(len(body)) + u32(zlib.crc32(body))
    return head + u32(zlib.crc32(head)) + body


snap_body = section("META", 0, bytes(range(16)) + u32(1) + u32(0)) + \
    section("APPD", 0, b"application blob") + \
    section("MEMR", 0, u32(1) + u64(0) + u64(128 << 20)) + section("VMST", 0, bytes(40)) + \
    section("VCPU", 0, bytes(100)) + section("UART", 0x3f8, bytes(12)) + \
    section("VIRT", 0xd0000, bytes(64))
write("fuzz_snapshot", "sealed-body", u8(1 | 4) + snap_body)
write("fuzz_snapshot", "whole-file", u8(2) + sealed(snap_body))
write("fuzz_snapshot", "no-app", u8(1) + section("META", 0, bytes(24)))
write("fuzz_snapshot", "corrupt", u8(0) + sealed(snap_body)[:-3])

# ---- fuzz_migrate: HELLO, PAGES, STATE (a body the target seals), END, RAW ----
G_HELLO, G_PAGES, G_STATE, G_END, G_RAW = range(5)
hello = u8(G_HELLO) + u8(0) + u16(4) + b"blob"
pages = u8(G_PAGES) + u8(0) + u16(2) + u32(0) + u8(0xcc)
state_body = section("META", 0, bytes(16) + u32(0) + u32(0)) + \
    section("MEMR", 0, u32(1) + u64(0) + u64(1 << 20))
state = u8(G_STATE) + u16(len(state_body)) + state_body
write("fuzz_migrate", "whole", hello + pages + state + u8(G_END))
write("fuzz_migrate", "pages-out-of-range", hello + u8(G_PAGES) + u8(0) + u16(4) + u32(254) +
      u8(1) + u8(G_PAGES) + u8(3) + u16(1) + u32(0) + u8(2) + u8(G_END))
write("fuzz_migrate", "bad-version", u8(G_HELLO) + u8(1) + u32(7) + u16(0))
write("fuzz_migrate", "raw-header", hello + u8(G_RAW) + u8(16) + u32(0x474d564c) + u32(9) +
      u64(1 << 40))

# ---- fuzz_vsock: cfg (CID, queue size), fuzz_mmio.h's language, then the target's ops ----
(VS_PKT, VS_RXBUF, VS_EVBUF, VS_RECV, VS_CONNECT, VS_WRITE, VS_READ, VS_CLOSE, VS_ACCEPT, VS_PUMP,
 VS_STATS) = range(FM_OP_COUNT, FM_OP_COUNT + 11)
VOP_REQUEST, VOP_RESPONSE, VOP_RST, VOP_SHUTDOWN, VOP_RW, VOP_CREDIT_UPDATE, VOP_CREDIT_REQUEST = \
    range(1, 8)


def vs_pkt(op, pm, src=b"", payload=b"", m=0, extra=b"", flags=0, lm=0, tail=b"", typ=None):
    """m: the mode byte's options (the CIDs' fields in extra); pm: the port
    mode (0: a known pair, 1: a listener, 2: a host port, 3: raw)."""
    opf = u16(op) if m & 0x80 else u8(op)
    t = b"" if typ is None else u16(typ)
    return u8(VS_PKT) + u8(m | (8 if t else 0)) + extra + opf + u8(pm) + src + t + u8(flags) + \
        u16(len(payload)) + u8(lm) + u8(len(payload)) + payload + tail


def vs_pump(n=3):
    return u8(VS_PUMP) + u8(n - 1)


vs_start = fm_setup(0) + u8(VS_RXBUF) + u8(7) + u8(VS_EVBUF) + u8(3)
write("fuzz_vsock", "host-initiated", u8(0) + vs_start +
      u8(VS_CONNECT) + u8(0) + u8(1) + vs_pump() + u8(VS_RECV) + u8(8) + vs_pump() +
      u8(VS_READ) + u8(0) + u8(0) + u8(VS_WRITE) + u8(0) + u16(5) + u8(5) + b"hello" +
      vs_pump() + u8(VS_RECV) + u8(2 | 8) + vs_pump() +
      vs_pkt(VOP_RW, 0, payload=b"pong") + vs_pump() + u8(VS_READ) + u8(0) + u8(0) +
      u8(VS_CLOSE) + u8(0) + u8(1) + vs_pump() + u8(VS_RECV) + u8(8) +
      vs_pkt(VOP_SHUTDOWN, 0, flags=3) + vs_pump() + u8(VS_RECV) + u8(8) + u8(VS_STATS))
write("fuzz_vsock", "guest-initiated", u8(1 | 4) + vs_start +
      vs_pkt(VOP_REQUEST, 1, src=u16(1025)) + vs_pump() + u8(VS_ACCEPT) + u8(0) +
      u8(VS_RECV) + u8(8) + vs_pkt(VOP_RW, 0, payload=b"hi host") + vs_pump() +
      u8(VS_READ) + u8(0) + u8(0) + u8(VS_WRITE) + u8(0) + u16(3000) + u8(2) + b"hi" +
      vs_pump() + u8(VS_RECV) + u8(8) + vs_pkt(VOP_CREDIT_REQUEST, 0) + vs_pump() +
      u8(VS_RECV) + u8(8) + u8(FM_RESET) + vs_pump() + u8(VS_READ) + u8(0) + u8(0) +
      u8(VS_STATS))
# Bad CIDs, type, short header, unknown op, lengths past the buffer, data to
# nothing, a refused connection; malformed handshakes; a guest that refuses.
write("fuzz_vsock", "hostile", u8(2) + vs_start +
      vs_pkt(VOP_REQUEST, 1, src=u16(7), m=3, extra=u64(99)) +
      vs_pkt(VOP_RW, 1, src=u16(7), payload=b"x", typ=2) +
      vs_pkt(VOP_RW, 3, src=u32(1) + u32(2), m=0x10, payload=b"abc", tail=u8(20)) +
      vs_pkt(99, 1, src=u16(8), m=0x80) +
      vs_pkt(VOP_RW, 2, src=u16(9), payload=b"past", lm=2, tail=u8(200)) +
      vs_pkt(VOP_REQUEST, 1 | (3 << 2), src=u16(10)) +
      vs_pkt(VOP_CREDIT_REQUEST, 2, src=u16(11)) +
      u8(VS_CONNECT) + u8(7) + u8(0) + u8(6) + b"HELLO\n" +
      u8(VS_CONNECT) + u8(5) + u8(0) + u64(1 << 40) +
      u8(VS_CONNECT) + u8(4) + u8(2) + u8(VS_CONNECT) + u8(2) + u8(3) +
      vs_pump(6) + u8(VS_RECV) + u8(1 | 8) + vs_pump() + u8(VS_RECV) + u8(8) + u8(VS_STATS))
# A host socket that does not read: the device buffers up to its credit,
# then a guest sending past it is reset; the host writes more than the
# guest's small credit (CREDIT_REQUEST, then an update opens it again).
big = u8(VS_PKT) + u8(0) + u8(VOP_RW) + u8(0) + u8(0) + u16(60000) + u8(0) + u8(0)
write("fuzz_vsock", "credit-overrun", u8(0) + vs_start +
      u8(VS_PKT) + u8(0x20) + u8(VOP_REQUEST) + u8(1) + u16(77) + u8(0) + u32(100) + u16(0) +
      u8(0) + u8(0) + vs_pump() + u8(VS_ACCEPT) + u8(0) + u8(VS_RECV) + u8(8) +
      (big + vs_pump(2)) * 8 + u8(VS_RECV) + u8(8) + u8(VS_WRITE) + u8(0) + u16(5000) + u8(0) +
      vs_pump() + u8(VS_RECV) + u8(8) + vs_pump() + u8(VS_RECV) + u8(2 | 8) + vs_pump() +
      u8(VS_RECV) + u8(8) + u8(VS_STATS))
