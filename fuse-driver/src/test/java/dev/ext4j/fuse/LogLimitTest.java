package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The printk rate limit, driven by hand-picked clock readings: no sleeping. */
class LogLimitTest {
    private static final long SECOND = 1_000_000_000L;

    @Test
    void burstThenDropsThenTheCountInTheNextInterval() {
        LogLimit limit = new LogLimit(5 * SECOND, 3);
        long t0 = -7 * SECOND; // any nanoTime reading, negative ones too
        assertEquals(0, limit.admit(t0));
        assertEquals(0, limit.admit(t0 + 1));
        assertEquals(0, limit.admit(t0 + 2 * SECOND));
        assertEquals(-1, limit.admit(t0 + 3 * SECOND));
        assertEquals(-1, limit.admit(t0 + 5 * SECOND - 1));
        assertEquals(2, limit.admit(t0 + 5 * SECOND), "the first message of the next interval says how many were dropped");
        assertEquals(0, limit.admit(t0 + 5 * SECOND + 1), "and the count starts again");
        assertEquals(0, limit.admit(t0 + 6 * SECOND));
        assertEquals(-1, limit.admit(t0 + 7 * SECOND));
    }

    @Test
    void theIntervalStartsAtTheFirstMessageAfterAQuietSpell() {
        LogLimit limit = new LogLimit(5 * SECOND, 1);
        assertEquals(0, limit.admit(100 * SECOND));
        assertEquals(-1, limit.admit(104 * SECOND));
        assertEquals(1, limit.admit(200 * SECOND));
        assertEquals(-1, limit.admit(204 * SECOND), "the new interval began at 200 s, not at 105 s");
        assertEquals(1, limit.admit(205 * SECOND));
    }

    @Test
    void theFirstMessageAlwaysPasses() {
        assertEquals(0, new LogLimit(5 * SECOND, 1).admit(Long.MIN_VALUE));
        assertEquals(0, new LogLimit(5 * SECOND, 1).admit(0));
    }
}
