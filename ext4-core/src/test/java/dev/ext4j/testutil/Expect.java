package dev.ext4j.testutil;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;

/** Assertions on ext4j errors: the exact errno, and never an unchecked exception. */
public final class Expect {
    private Expect() {
    }

    @FunctionalInterface
    public interface Action {
        void run() throws Exception;
    }

    /**
     * Runs {@code action} and requires it to throw an {@link Ext4Exception} with {@code errno}.
     * Any other throwable (IndexOutOfBounds, BufferUnderflow, ...) fails the test with its trace.
     */
    public static Ext4Exception errno(Errno errno, Action action) {
        try {
            action.run();
        } catch (Ext4Exception e) {
            if (e.errno() != errno) {
                AssertionError ae = new AssertionError("expected " + errno + " but got " + e);
                ae.initCause(e);
                throw ae;
            }
            assertEquals(errno, e.errno());
            return e;
        } catch (Throwable t) {
            AssertionError ae = new AssertionError("expected Ext4Exception " + errno + " but got " + t);
            ae.initCause(t);
            throw ae;
        }
        return fail("expected Ext4Exception " + errno + " but the operation succeeded");
    }

    /** Runs {@code action}; an exception of any kind fails with its cause attached. */
    public static void ok(Action action) {
        try {
            action.run();
        } catch (Throwable t) {
            AssertionError ae = new AssertionError("expected success but got " + t);
            ae.initCause(t);
            throw ae;
        }
    }
}
