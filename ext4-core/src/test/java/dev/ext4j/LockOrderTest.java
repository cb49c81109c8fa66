package dev.ext4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.LockOrder.Level;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** {@link LockOrder} by itself (the real locks are tested through their classes in dev.ext4j.fs.InodeLocksTest). */
class LockOrderTest {
    @BeforeEach
    void enabled() {
        assumeTrue(LockOrder.ENABLED, "run with -Dext4j.lockcheck=true (ext4-core's surefire sets it)");
        assertEquals(List.of(), LockOrder.held());
    }

    @AfterEach
    void nothingLeft() {
        assertEquals(List.of(), LockOrder.held(), "a test released everything it took");
    }

    @Test
    void theDocumentedOrderPasses() {
        Level[] all = Level.values();
        for (Level l : all) {
            LockOrder.acquire(l, 7);
        }
        assertEquals(all.length, LockOrder.held().size());
        for (int i = all.length - 1; i >= 0; i--) {
            LockOrder.release(all[i], 7);
        }
    }

    @Test
    void anEarlierLevelUnderALaterOneFailsNamingBoth() {
        LockOrder.acquire(Level.GROUP, 3);
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> LockOrder.acquire(Level.INODE, 12));
            assertTrue(e.getMessage().contains("asks for inode 12 while holding group 3"), e.getMessage());
        } finally {
            LockOrder.release(Level.GROUP, 3);
        }
    }

    @Test
    void twoGroupsAtOnceFailButReentryPasses() {
        LockOrder.acquire(Level.GROUP, 3);
        try {
            LockOrder.acquire(Level.GROUP, 3);
            LockOrder.release(Level.GROUP, 3);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> LockOrder.acquire(Level.GROUP, 4));
            assertTrue(e.getMessage().contains("asks for group 4 while holding group 3"), e.getMessage());
        } finally {
            LockOrder.release(Level.GROUP, 3);
        }
    }

    @Test
    void inodesOnlyAscending() {
        LockOrder.acquire(Level.INODE, 2);
        LockOrder.acquire(Level.INODE, 1026);
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> LockOrder.acquire(Level.INODE, 12));
            assertTrue(e.getMessage().contains("asks for inode 12 while holding inode 1026"), e.getMessage());
            LockOrder.acquire(Level.INODE, 2); // re-entry is fine in any order
            LockOrder.release(Level.INODE, 2);
        } finally {
            LockOrder.release(Level.INODE, 1026);
            LockOrder.release(Level.INODE, 2);
        }
    }

    @Test
    void sharedToExclusiveFails() {
        LockOrder.acquireShared(Level.INODE, 5);
        try {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> LockOrder.acquire(Level.INODE, 5));
            assertTrue(e.getMessage().contains("upgrade"), e.getMessage());
        } finally {
            LockOrder.release(Level.INODE, 5);
        }
    }

    @Test
    void aMonitorCountsWhileHeldOnly() {
        Object sb = new Object();
        synchronized (LockOrder.monitor(Level.SUPERBLOCK, -1, sb)) {
            assertEquals(List.of("superblock"), LockOrder.held());
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> LockOrder.acquire(Level.JOURNAL, -1));
            assertTrue(e.getMessage().contains("asks for journal handle while holding superblock"), e.getMessage());
        }
        LockOrder.acquire(Level.JOURNAL, -1); // the monitor was left: nothing is held
        LockOrder.release(Level.JOURNAL, -1);
    }

    @Test
    void releasingWhatIsNotHeldFails() {
        assertThrows(IllegalStateException.class, () -> LockOrder.release(Level.INODE, 9));
    }
}
