/*
 * Ferry demo guest: ring-3 main program (see ../README.md for the protocol and the design).
 *
 * Everything here runs in ring 3 with IOPL=3: port I/O (COM1, PIT, ACPI) works, interrupts
 * stay off, there is no IDT. Every translation unit is compiled with -ffixed-r15 so that the
 * rewrite counter G lives in r15 and nowhere else.
 */
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

/* Total page rewrites since the last fill. Only in a register: after a migration the vCPU
 * registers arrive intact while a stale RAM page does not, so verify re-derives every page's
 * expected version from G alone. */
register u64 G asm("r15");

#define GUEST_VERSION 1
#define PAGE_WORDS 512
#define HDR_WORDS 3
#define MAX_WORDS (PAGE_WORDS - HDR_WORDS) /* 509 */
#define WS_BASE (8ull << 20)               /* first working-set byte (above image/stacks/tables) */
#define MAGIC 0x4645525259000000ull        /* "FERRY" in the top 40 bits, page index below */
#define MAX_RATE 1000000ull                /* MiB/s */
#define MAX_HB_MS 3600000ull

#define COM1 0x3F8
#define LSR (COM1 + 5)

extern u64 pd[4 * 512];

/* ---------------------------------------------------------------- port I/O, TSC */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* ---------------------------------------------------------------- state (RAM) */

static u64 tsc_khz;
static u64 tsc_boot;
static u64 ram_top;       /* end of usable RAM that starts at 1 MiB, bytes */
static u64 max_ws_mib;

static u64 ws_mib = 32;
static u64 npages;
static u64 rate;          /* MiB/s */
static int rate_max;
static u64 words = 16;
static u64 hb_ms = 100;

static u64 credit;        /* rate control: pages * TSC ticks */
static u64 credit_cap;
static u64 credit_tsc;
static u64 total_rewrites; /* monotonic, for achieved_kib_s */

static u64 hb_seq;
static u64 hb_ticks;
static u64 next_hb;
static u64 last_hb_tsc;
static u64 last_hb_total;
static u64 last_achieved;
static u64 max_gap;

/* ---------------------------------------------------------------- page contents */

static inline u64 mix(u64 z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Word i (HDR_WORDS..511) of page p at version v: unique inputs for p < 2^24, v < 2^31. */
static inline u64 f(u64 p, u64 v, u64 i) { return mix((p << 40) ^ (v << 9) ^ i); }

static inline u64 *page_ptr(u64 p) { return (u64 *)(uintptr_t)(WS_BASE + (p << 12)); }

static inline u64 expected_version(u64 p)
{
    return G / npages + (p < G % npages ? 1 : 0);
}

/* A fully self-consistent page at version v with k rewritten words. */
static void write_page(u64 p, u64 v, u64 k)
{
    u64 *w = page_ptr(p);
    w[0] = MAGIC | p;
    w[1] = v;
    w[2] = k;
    for (u64 i = HDR_WORDS; i < HDR_WORDS + k; i++) w[i] = f(p, v, i);
    for (u64 i = HDR_WORDS + k; i < PAGE_WORDS; i++) w[i] = f(p, 0, i);
}

static void fill(void)
{
    npages = ws_mib * 256;
    for (u64 p = 0; p < npages; p++) write_page(p, 0, words);
    G = 0;
}

/* The next round-robin rewrite: page G mod npages, version G / npages + 1. */
static inline void rewrite_one(void)
{
    u64 p = G % npages, v = G / npages + 1, k = words;
    u64 *w = page_ptr(p);
    u64 oldk = w[2];
    if (oldk > MAX_WORDS) oldk = MAX_WORDS;
    for (u64 i = HDR_WORDS + k; i < HDR_WORDS + oldk; i++) w[i] = f(p, 0, i); /* k shrank */
    for (u64 i = HDR_WORDS; i < HDR_WORDS + k; i++) w[i] = f(p, v, i);
    w[2] = k;
    w[1] = v;
    G++;
}

/* ---------------------------------------------------------------- serial output */

static char obuf[256];
static unsigned olen;

static void put_c(char c)
{
    if (olen < sizeof obuf - 1) obuf[olen++] = c;
}
static void put_s(const char *s)
{
    while (*s) put_c(*s++);
}
static void put_u(u64 v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) put_c(t[--n]);
}
static void put_i(i64 v)
{
    if (v < 0) {
        put_c('-');
        put_u((u64)0 - (u64)v);
    } else {
        put_u((u64)v);
    }
}
static void put_kv(const char *k, u64 v)
{
    put_c(' ');
    put_s(k);
    put_c('=');
    put_u(v);
}
static void put_rate(void)
{
    put_s(" rate=");
    if (rate_max) put_s("max");
    else put_u(rate);
}

/* Output goes through a ring drained a few bytes per main-loop iteration: under nested PVM
 * KVM every port access costs ~70 us, so writing a whole line at once would stall the loop
 * for ~6 ms and hide short stalls (downtime) behind our own output. */
#define TX_RING 8192
#define TX_PER_ITER 4
static char tx[TX_RING];
static u64 tx_head, tx_tail; /* free-running: head = next byte to send, tail = next free */
static unsigned tx_room;     /* bytes the UART FIFO surely takes without another LSR read */

/* Sends up to max bytes; returns the number sent. */
static unsigned tx_drain(unsigned max)
{
    unsigned n = 0;
    while (n < max && tx_head != tx_tail) {
        if (!tx_room) {
            if (!(inb(LSR) & 0x20)) break; /* FIFO not empty yet (chardev back-pressure) */
            tx_room = 16;
        }
        outb(COM1, (u8)tx[tx_head++ % TX_RING]);
        tx_room--;
        n++;
    }
    return n;
}

static void flush_line(void)
{
    obuf[olen++] = '\n';
    while (tx_tail - tx_head + olen > TX_RING) tx_drain(16); /* ring full: block */
    for (unsigned i = 0; i < olen; i++) tx[tx_tail++ % TX_RING] = obuf[i];
    olen = 0;
}

static void tx_flush_all(void)
{
    while (tx_head != tx_tail) tx_drain(16);
}

static void err(const char *msg)
{
    put_s("ERR ");
    put_s(msg);
    flush_line();
}

static int pre_boot_input; /* set by uart_init, reported once the guest is up */

/* Enabling the FIFOs clears them, and QEMU's UART (FIFO off after reset) holds one received byte:
 * a byte that came in before this point is lost, so the rest of that line is dropped too. */
static void uart_init(void)
{
    pre_boot_input = inb(LSR) & 1;
    outb(COM1 + 1, 0x00); /* no interrupts */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xC7); /* FIFOs on, cleared */
    outb(COM1 + 4, 0x03); /* DTR, RTS */
}

/* ---------------------------------------------------------------- time */

static inline u64 us_of(u64 ticks) { return ticks * 1000 / tsc_khz; }

/* One ~50 ms measurement against PIT channel 2 (mode 0, gate on via port 0x61, OUT2 read back
 * in bit 5 of port 0x61). Returns the TSC ticks of the interval (0 on failure) and, in *unc,
 * how uncertain they are: counting starts somewhere inside the write of the count's high byte
 * and the edge lies between the last read that saw OUT2 low and the first that saw it high. */
#define PIT_HZ 1193182ull
#define PIT_LATCH 59659ull /* 50 ms */
static u64 pit_measure(u64 *unc)
{
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xB0); /* channel 2, lo/hi byte, mode 0, binary */
    outb(0x42, (u8)(PIT_LATCH & 0xFF));
    u64 a0 = rdtsc();
    outb(0x42, (u8)(PIT_LATCH >> 8));
    u64 a1 = rdtsc(), low = a1;
    for (u64 spins = 0; spins < 50000000ull; spins++) {
        u64 ts = rdtsc();
        u8 v = inb(0x61);
        u64 te = rdtsc();
        if (v & 0x20) {
            *unc = (te - low) + (a1 - a0);
            return ((low + te) - (a0 + a1)) / 2;
        }
        low = ts;
    }
    return 0;
}

/* Up to 4 measurements, the least uncertain wins; done once one is within 1 %. A vCPU that is
 * descheduled (busy 2-core host, TCG) or slow port I/O (~70 us each under PVM) only widens the
 * uncertainty, which this detects, instead of skewing the result. */
static void calibrate_tsc(void)
{
    u64 best = 0, best_unc = ~0ull;
    for (int i = 0; i < 4; i++) {
        u64 unc = 0, d = pit_measure(&unc);
        if (d && unc < best_unc) best = d, best_unc = unc;
        if (best && best_unc * 100 < best) break;
    }
    tsc_khz = best * PIT_HZ / (PIT_LATCH * 1000);
    if (tsc_khz < 1000) {
        tsc_khz = 2000000;
        err("tsc calibration failed, assuming 2000000 kHz");
    }
}

/* ---------------------------------------------------------------- settings */

static void set_rate(u64 r, int is_max)
{
    rate = is_max ? 0 : r;
    rate_max = is_max;
    credit = 0;
    credit_tsc = rdtsc();
    /* at most ~10 ms of debt, never less than one page */
    credit_cap = rate * 256 * (tsc_khz * 1000) / 100;
    if (credit_cap < tsc_khz * 1000) credit_cap = tsc_khz * 1000;
}

static void set_hb(u64 ms)
{
    hb_ms = ms;
    hb_ticks = ms * tsc_khz;
    next_hb = rdtsc() + hb_ticks;
}

/* ---------------------------------------------------------------- parsing */

/* Decimal u64; 0 on success. */
static int parse_u64(const char *s, u64 *out)
{
    u64 v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        u64 d = (u64)(*s - '0');
        if (v > (~0ull - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* Validators shared by the boot command line and the serial commands: NULL = fine. */
static const char *check_ws(const char *s, u64 *v)
{
    if (parse_u64(s, v)) return "bad working set: expected MiB";
    if (*v < 1) return "bad working set: must be >= 1 MiB";
    if (*v > max_ws_mib) return "working set exceeds RAM";
    return 0;
}
static const char *check_rate(const char *s, u64 *v, int *is_max)
{
    *is_max = streq(s, "max");
    if (*is_max) return 0;
    if (parse_u64(s, v)) return "bad rate: expected MiB/s or max";
    if (*v > MAX_RATE) return "bad rate: too large";
    return 0;
}
static const char *check_words(const char *s, u64 *v)
{
    if (parse_u64(s, v) || *v < 1 || *v > MAX_WORDS) return "bad words: expected 1..509";
    return 0;
}
static const char *check_hb(const char *s, u64 *v)
{
    if (parse_u64(s, v) || (*v != 0 && *v < 10) || *v > MAX_HB_MS) return "bad heartbeat: expected 0 or 10..3600000 ms";
    return 0;
}

/* ---------------------------------------------------------------- multiboot */

static void read_multiboot(u32 mbi_addr, char *cmdline, unsigned cap)
{
    const u32 *mbi = (const u32 *)(uintptr_t)mbi_addr;
    u32 flags = mbi[0];
    ram_top = 0;
    if (flags & (1u << 6)) { /* memory map: the available region that contains 1 MiB */
        u32 len = mbi[11], addr = mbi[12];
        for (u32 off = 0; off + 24 <= len;) {
            const u8 *e = (const u8 *)(uintptr_t)(addr + off);
            u32 size = *(const u32 *)e;
            u64 base = *(const u64 *)(e + 4), l = *(const u64 *)(e + 12);
            u32 type = *(const u32 *)(e + 20);
            if (type == 1 && base <= 0x100000 && base + l > 0x100000) ram_top = base + l;
            off += size + 4;
        }
    }
    if (!ram_top && (flags & 1)) ram_top = 0x100000 + (u64)mbi[2] * 1024;
    if (ram_top > (4ull << 30)) ram_top = 4ull << 30;
    max_ws_mib = ram_top > WS_BASE ? (ram_top - WS_BASE) >> 20 : 0;

    cmdline[0] = 0;
    if (flags & (1u << 2)) {
        const char *c = (const char *)(uintptr_t)mbi[4];
        unsigned n = 0;
        while (c[n] && n < cap - 1) cmdline[n] = c[n], n++;
        cmdline[n] = 0;
    }
}

/* The identity map of the first 4 GiB beyond what ring 0 mapped (the first 8 MiB). The new
 * entries were not present before, so nothing stale can be cached in the TLB. */
static void complete_identity_map(void)
{
    for (u64 i = 0; i < 4 * 512; i++)
        if (!(pd[i] & 1)) pd[i] = (i << 21) | 0x87;
}

/* Boot parameters: space-separated key=value; other tokens (the kernel path) are ignored. */
static void parse_cmdline(char *s)
{
    while (*s) {
        while (*s == ' ') s++;
        char *tok = s;
        while (*s && *s != ' ') s++;
        if (*s) *s++ = 0;
        char *eq = tok;
        while (*eq && *eq != '=') eq++;
        if (!*eq) continue;
        *eq = 0;
        const char *val = eq + 1, *e = 0;
        u64 v = 0;
        int is_max = 0;
        if (streq(tok, "ws")) {
            if (!(e = check_ws(val, &v))) ws_mib = v;
        } else if (streq(tok, "rate")) {
            if (!(e = check_rate(val, &v, &is_max))) rate = v, rate_max = is_max;
        } else if (streq(tok, "words")) {
            if (!(e = check_words(val, &v))) words = v;
        } else if (streq(tok, "hb")) {
            if (!(e = check_hb(val, &v))) hb_ms = v;
        }
        if (e) {
            put_s("ERR boot parameter ");
            put_s(tok);
            put_s(": ");
            put_s(e);
            flush_line();
        }
    }
    if (ws_mib > max_ws_mib) ws_mib = max_ws_mib; /* default larger than RAM */
}

/* ---------------------------------------------------------------- reports */

static void report(const char *keyword, u64 now, int close_period)
{
    u64 dt = now - last_hb_tsc;
    u64 achieved = last_achieved;
    if (close_period || dt * 100 >= tsc_khz * 1000) { /* >= 10 ms */
        u64 us = us_of(dt);
        if (us) achieved = (total_rewrites - last_hb_total) * 4 * 1000000 / us;
    }
    put_s(keyword);
    put_kv("seq", hb_seq);
    put_kv("t_ms", (now - tsc_boot) / tsc_khz);
    put_kv("ws_mib", ws_mib);
    put_rate();
    put_kv("achieved_kib_s", achieved);
    put_kv("stall_us", us_of(max_gap));
    put_kv("writes", G);
    flush_line();
    if (close_period) {
        last_achieved = achieved;
        last_hb_tsc = now;
        last_hb_total = total_rewrites;
        max_gap = 0;
    }
}

static void verify(void)
{
    u64 t0 = rdtsc();
    u64 bad = 0, stale = 0;
    i64 first = -1;
    for (u64 p = 0; p < npages; p++) {
        const u64 *w = page_ptr(p);
        u64 v = w[1], k = w[2];
        int ok = w[0] == (MAGIC | p) && k >= 1 && k <= MAX_WORDS;
        for (u64 i = HDR_WORDS; ok && i < PAGE_WORDS; i++)
            ok = w[i] == f(p, i < HDR_WORDS + k ? v : 0, i);
        if (!ok) bad++;
        else if (v != expected_version(p)) stale++;
        if ((!ok || v != expected_version(p)) && first < 0) first = (i64)p;
    }
    put_s("VERIFY result=");
    put_s(bad || stale ? "fail" : "ok");
    put_kv("pages", npages);
    put_kv("bad", bad);
    put_kv("stale", stale);
    put_s(" first_bad=");
    put_i(first);
    put_kv("ms", (rdtsc() - t0) / tsc_khz);
    flush_line();
}

/* ---------------------------------------------------------------- commands */

static void ok_kv(char cmd, const char *k, u64 v)
{
    put_s("OK ");
    put_c(cmd);
    put_kv(k, v);
    flush_line();
}

static int page_arg(const char *arg, u64 *p)
{
    if (parse_u64(arg, p)) {
        err("bad page: expected a page index");
        return -1;
    }
    if (*p >= npages) {
        err("bad page: beyond the working set");
        return -1;
    }
    return 0;
}

static void command(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return;
    char cmd = *s++;
    if (*s && *s != ' ' && *s != '\t') {
        err("unknown command");
        return;
    }
    while (*s == ' ' || *s == '\t') s++;
    char *arg = s, *end = s;
    while (*end) end++;
    while (end > arg && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
    int has_arg = *arg != 0;
    const char *e;
    u64 v = 0;
    int is_max = 0;

    switch (cmd) {
    case 'w':
        if ((e = check_ws(arg, &v))) return err(e);
        ws_mib = v;
        fill();
        set_rate(rate, rate_max);
        ok_kv('w', "ws_mib", ws_mib);
        return;
    case 'r':
        if ((e = check_rate(arg, &v, &is_max))) return err(e);
        set_rate(v, is_max);
        put_s("OK r");
        put_rate();
        flush_line();
        return;
    case 'k':
        if ((e = check_words(arg, &v))) return err(e);
        words = v;
        ok_kv('k', "words", words);
        return;
    case 'h':
        if ((e = check_hb(arg, &v))) return err(e);
        set_hb(v);
        ok_kv('h', "hb_ms", hb_ms);
        return;
    case 'v':
        if (has_arg) return err("v takes no argument");
        verify();
        return;
    case 's':
        if (has_arg) return err("s takes no argument");
        report("STATUS", rdtsc(), hb_ms == 0);
        return;
    case 'x':
        if (page_arg(arg, &v)) return;
        page_ptr(v)[PAGE_WORDS - 1] ^= 0x00FF00FF00FF00FFull;
        ok_kv('x', "page", v);
        return;
    case 'o': {
        if (page_arg(arg, &v)) return;
        u64 exp = expected_version(v);
        write_page(v, exp ? exp - 1 : 1, words);
        ok_kv('o', "page", v);
        return;
    }
    case 'q':
        put_s("OK q");
        flush_line();
        tx_flush_all();
        outw(0x604, 0x2000); /* ACPI PM1a_CNT: S5 on QEMU's pc machine */
        err("shutdown did not happen");
        return;
    default:
        err("unknown command");
    }
}

static char ibuf[96];
static unsigned ilen;
static int ioverflow; /* line too long, or its head was lost before boot: drop it */

static void poll_serial(void)
{
    while (inb(LSR) & 1) {
        char c = (char)inb(COM1);
        if (c == '\n' || c == '\r') {
            ibuf[ilen] = 0;
            tx_flush_all(); /* earlier output first, and promptly, before a long command */
            if (ioverflow == 2) err("input sent before boot dropped");
            else if (ioverflow) err("line too long");
            else command(ibuf);
            ilen = 0;
            ioverflow = 0;
        } else if (ilen < sizeof ibuf - 1) {
            ibuf[ilen++] = c;
        } else {
            ioverflow = 1;
        }
    }
}

/* ---------------------------------------------------------------- main loop */

/* Rewrites pages for at most ~250 us: as allowed by the rate (token bucket against the TSC,
 * at most ~10 ms of debt), or as many as fit at rate=max. */
static void work(u64 now)
{
    if (!npages || (!rate_max && !rate)) {
        credit_tsc = now;
        return;
    }
    u64 hz = tsc_khz * 1000, n;
    if (rate_max) {
        n = ~0ull;
    } else {
        u64 dt = now - credit_tsc;
        credit_tsc = now;
        if (dt > hz) dt = hz;
        credit += dt * rate * 256;
        if (credit > credit_cap) credit = credit_cap;
        n = credit / hz;
    }
    u64 limit = now + tsc_khz / 4, done = 0;
    while (done < n) {
        rewrite_one();
        done++;
        if (!(done & 7) && rdtsc() >= limit) break;
    }
    total_rewrites += done;
    if (!rate_max) credit -= done * hz;
}

void guest_main(u32 mbi)
{
    static char cmdline[256];
    uart_init();
    complete_identity_map();
    read_multiboot(mbi, cmdline, sizeof cmdline);
    calibrate_tsc();
    tsc_boot = rdtsc();
    parse_cmdline(cmdline);
    fill();

    put_s("FERRY-GUEST");
    put_kv("version", GUEST_VERSION);
    put_kv("mem_mib", ram_top >> 20);
    put_kv("tsc_khz", tsc_khz);
    put_kv("ws_mib", ws_mib);
    put_rate();
    put_kv("words", words);
    put_kv("hb_ms", hb_ms);
    flush_line();
    if (pre_boot_input) ioverflow = 2;

    u64 now = rdtsc(), prev = now, next_poll = now;
    const u64 poll_ticks = tsc_khz; /* 1 ms */
    set_rate(rate, rate_max);
    set_hb(hb_ms);
    last_hb_tsc = now;
    for (;;) {
        now = rdtsc();
        if ((i64)(now - prev) > (i64)max_gap) max_gap = now - prev; /* TSC going back: ignore */
        prev = now;
        if ((i64)(now - next_poll) >= 0) {
            poll_serial();
            next_poll = rdtsc() + poll_ticks;
        }
        if (hb_ms && (i64)(now - next_hb) >= 0) {
            hb_seq++;
            report("HB", now, 1);
            next_hb += hb_ticks;
            if ((i64)(now - next_hb) >= 0) next_hb = now + hb_ticks; /* after a pause: no burst */
        }
        tx_drain(TX_PER_ITER);
        work(now);
    }
}
