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
    private boolean started;
    private long windowStart;
    private int printed;
    private int missed;

    LogLimit(long intervalNanos, int burst) {
        this.intervalNanos = intervalNanos;
        this.burst = burst;
    }

    /**
     * -1 when the message at {@code now} (a {@link System#nanoTime} reading) is to be dropped, else
     * how many were dropped before it. The first message opens the first interval.
     */
    synchronized int admit(long now) {
        if (!started || now - windowStart >= intervalNanos) {
            started = true;
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
