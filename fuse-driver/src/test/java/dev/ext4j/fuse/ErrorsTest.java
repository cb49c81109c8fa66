package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The one errno translation: each core errno to {@code -errno}, corruption recorded, a bug to EIO
 * with its stack trace in the log, and the log's rate limit driven by a hand-moved clock. The log
 * is read through java.util.logging, where System.getLogger("ext4j") writes.
 */
class ErrorsTest {
    private static final long SECOND = 1_000_000_000L;
    /** Held, so the logger and its handler are not collected while the test runs. */
    private final Logger jul = Logger.getLogger("ext4j");
    private final List<LogRecord> logged = new ArrayList<>();
    private final Handler capture = new Handler() {
        @Override
        public void publish(LogRecord r) {
            synchronized (logged) {
                logged.add(r);
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };
    private Level oldLevel;
    private boolean oldUseParent;

    private final List<String> recorded = new ArrayList<>();
    private final AtomicLong clock = new AtomicLong(42 * SECOND);
    private final Errors errors = new Errors((op, e) -> recorded.add(op + ": " + e), clock::get);

    @BeforeEach
    void captureLog() {
        oldLevel = jul.getLevel();
        oldUseParent = jul.getUseParentHandlers();
        jul.setLevel(Level.ALL);
        jul.setUseParentHandlers(false);
        capture.setLevel(Level.ALL);
        jul.addHandler(capture);
    }

    @AfterEach
    void restoreLog() {
        jul.removeHandler(capture);
        jul.setLevel(oldLevel);
        jul.setUseParentHandlers(oldUseParent);
    }

    private static String text(LogRecord r) {
        return java.text.MessageFormat.format(r.getMessage(), r.getParameters() == null ? new Object[0] : r.getParameters());
    }

    private int fail(String op, Errno errno, String message) {
        return errors.call(op, "/a/b", () -> {
            throw new Ext4Exception(errno, message);
        });
    }

    @Test
    void aBodyThatSucceedsGivesItsResultAndNoLog() {
        assertEquals(4096, errors.call("read", "/f", () -> 4096));
        assertEquals(-Errno.ENOENT.value(), errors.call("getattr", "/f", () -> -Errno.ENOENT.value()), "a returned -errno is not touched");
        assertEquals(List.of(), logged);
    }

    @ParameterizedTest
    @EnumSource(Errno.class)
    void everyErrnoIsReturnedNegated(Errno errno) {
        assertEquals(-errno.value(), fail("op", errno, "inode 12: what went wrong"));
    }

    @Test
    void answersProgramsAskForAreLoggedAtDebug() {
        for (Errno e : List.of(Errno.ENOENT, Errno.ENODATA, Errno.EACCES, Errno.EPERM, Errno.EROFS)) {
            fail("open", e, "inode 12: no");
        }
        assertEquals(5, logged.size());
        for (LogRecord r : logged) {
            assertEquals(Level.FINE, r.getLevel(), text(r));
        }
        assertEquals("open /a/b: ENOENT: inode 12: no", text(logged.get(0)));
        assertEquals(List.of(), recorded);
    }

    @Test
    void otherFailuresAreLoggedAtInfo() {
        assertEquals(-Errno.ENOSPC.value(), fail("write", Errno.ENOSPC, "no free blocks"));
        assertEquals(1, logged.size());
        assertEquals(Level.INFO, logged.get(0).getLevel());
        assertEquals("write /a/b: ENOSPC: no free blocks", text(logged.get(0)));
    }

    @Test
    void corruptionIsRecordedThenLoggedAsAnError() {
        assertEquals(-Errno.EUCLEAN.value(), fail("readdir", Errno.EUCLEAN, "dirent at 4020 has rec_len 0 (min 12)"));
        assertEquals(-Errno.EBADMSG.value(), fail("read", Errno.EBADMSG, "extent block 5123: stored crc 0x1, computed 0x2"));
        assertEquals(-Errno.EIO.value(), fail("read", Errno.EIO, "block 7: short read"));
        assertEquals(List.of("readdir: EUCLEAN: dirent at 4020 has rec_len 0 (min 12)",
                "read: EBADMSG: extent block 5123: stored crc 0x1, computed 0x2"), recorded, "EIO is not corruption");
        assertEquals(3, logged.size());
        for (LogRecord r : logged) {
            assertEquals(Level.SEVERE, r.getLevel(), text(r));
        }
    }

    @Test
    void aRuntimeExceptionIsEioWithItsStackTraceLogged() {
        IllegalStateException bug = new IllegalStateException("a bug");
        assertEquals(-Errno.EIO.value(), errors.call("rename", "/x", () -> {
            throw bug;
        }));
        assertEquals(1, logged.size());
        LogRecord r = logged.get(0);
        assertEquals(Level.SEVERE, r.getLevel());
        assertEquals("rename /x: unexpected failure, returning EIO", r.getMessage());
        assertSame(bug, r.getThrown());
        assertEquals(List.of(), recorded);
    }

    @Test
    void aStackOverflowIsEioToo() {
        assertEquals(-Errno.EIO.value(), errors.call("lookup", "/deep", () -> {
            throw new StackOverflowError();
        }));
        assertTrue(logged.get(0).getThrown() instanceof StackOverflowError);
    }

    @Test
    void otherErrorsAreNotSwallowed() {
        assertThrows(AssertionError.class, () -> errors.call("op", "/", () -> {
            throw new AssertionError("broken invariant");
        }));
    }

    /** Ten messages per 5 s per class (errors, the rest); the first after a drop says how many went. */
    @Test
    void logLinesAreRateLimitedPerClass() {
        for (int i = 0; i < 13; i++) {
            assertEquals(-Errno.ENOSPC.value(), fail("write", Errno.ENOSPC, "full " + i), "the errno is returned whether logged or not");
        }
        assertEquals(10, logged.size());
        fail("read", Errno.EIO, "an error still gets through");
        assertEquals(11, logged.size());
        assertEquals(Level.SEVERE, logged.get(10).getLevel());
        for (int i = 0; i < 20; i++) {
            fail("lookup", Errno.ENOENT, "debug lines are not limited");
        }
        assertEquals(31, logged.size());

        clock.addAndGet(5 * SECOND - 1);
        fail("write", Errno.ENOSPC, "still inside the interval");
        assertEquals(31, logged.size());
        clock.addAndGet(1);
        fail("write", Errno.ENOSPC, "next interval");
        assertEquals(33, logged.size());
        assertEquals("4 similar messages suppressed", text(logged.get(31)));
        assertEquals(Level.INFO, logged.get(31).getLevel());
        assertEquals("write /a/b: ENOSPC: next interval", text(logged.get(32)));
    }
}
