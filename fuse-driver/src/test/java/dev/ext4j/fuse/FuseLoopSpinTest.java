package dev.ext4j.fuse;

import static dev.ext4j.fuse.FuseLoop.MAX_SPIN_NANOS;
import static dev.ext4j.fuse.FuseLoop.MIN_SPIN_NANOS;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** How long the FUSE reader polls between requests, as the client's pauses go. */
class FuseLoopSpinTest {
    private static final long US = 1_000;

    /** Feeds {@code pauses} (ns) into the average, from {@code average}. */
    private static long after(long average, long... pauses) {
        for (long p : pauses) {
            average = FuseLoop.averagePause(average, p);
        }
        return average;
    }

    @Test
    void aShellLoopsLongTurnAmongShortPausesIsPolledThrough() {
        long avg = MIN_SPIN_NANOS;
        for (int file = 0; file < 100; file++) {
            avg = after(avg, 20 * US, 20 * US, 20 * US, 20 * US, 300 * US); // LOOKUP, CREATE, GETXATTR, WRITE, then the loop's turn
            assertEquals(MAX_SPIN_NANOS, FuseLoop.spinFor(avg), "file " + file);
        }
    }

    @Test
    void anIdleMountPollsTheLeast() {
        long avg = after(MIN_SPIN_NANOS, 5 * US, 5 * US, 5 * US);
        assertEquals(MAX_SPIN_NANOS, FuseLoop.spinFor(avg));
        for (int i = 0; i < 20; i++) {
            avg = after(avg, 10_000_000_000L); // ten seconds between requests
        }
        assertEquals(MIN_SPIN_NANOS, FuseLoop.spinFor(avg));
        assertEquals(2 * MAX_SPIN_NANOS, after(avg, 10_000_000_000L, 10_000_000_000L), 2 * MAX_SPIN_NANOS / 8,
                "a long pause counts as twice the longest poll, so a burst brings polling back soon");
    }

    @Test
    void oneLongPauseInABusyStreamKeepsThePollAndABurstAfterIdlingBringsItBack() {
        long busy = after(MIN_SPIN_NANOS, 10 * US, 10 * US, 10 * US, 10 * US, 10 * US, 10 * US, 10 * US, 10 * US);
        assertEquals(MAX_SPIN_NANOS, FuseLoop.spinFor(after(busy, 5_000_000_000L)));

        long idle = after(busy, 5_000_000_000L, 5_000_000_000L, 5_000_000_000L, 5_000_000_000L,
                5_000_000_000L, 5_000_000_000L, 5_000_000_000L, 5_000_000_000L);
        assertEquals(MIN_SPIN_NANOS, FuseLoop.spinFor(idle));
        int requests = 0;
        long avg = idle;
        while (FuseLoop.spinFor(avg) != MAX_SPIN_NANOS && requests < 100) {
            avg = after(avg, 10 * US);
            requests++;
        }
        assertTrue(requests > 0 && requests <= 8, requests + " requests of a new burst before the reader polls long again");
    }
}
