package dev.ext4j.fuse;

/**
 * The kernel's printk rate limit (lib/ratelimit.c, as ext4 uses it for its messages): at most
 * {@code burst} messages in each {@code interval}; the rest are dropped and counted, and the next
 * message that passes first says how many were. A disk that stays full, or a corrupt inode that a
 * program keeps reading, then costs a few log lines per interval instead of one per request.
 */
final class LogLimit {
    private final long intervalNanos;
    private final int burst;
    private long windowStart;
    private int printed;
    private int missed;

    LogLimit(long intervalNanos, int burst) {
        this.intervalNanos = intervalNanos;
        this.burst = burst;
        this.windowStart = System.nanoTime() - intervalNanos;
    }

    /** -1 when the message at {@code now} is to be dropped, else how many were dropped before it. */
    synchronized int admit(long now) {
        if (now - windowStart >= intervalNanos) {
            windowStart = now;
            printed = 0;
        }
        if (printed >= burst) {
            missed++;
            return -1;
        }
        printed++;
        int dropped = missed;
        missed = 0;
        return dropped;
    }
}
