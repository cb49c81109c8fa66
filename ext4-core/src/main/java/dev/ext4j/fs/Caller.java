package dev.ext4j.fs;

import java.util.function.Supplier;

/**
 * Who is asking: the user and group of the process behind the request the current thread serves.
 * The policies that depend on it read it here (the blocks reserved for root, the trusted.* xattr
 * namespace); permission checks themselves are the kernel's (default_permissions). Root unless the
 * FUSE adapter says otherwise.
 *
 * <p>The adapter marks each request with {@link #fromRequest} and the credentials are fetched only
 * when a policy asks, since most requests never need them.
 */
public final class Caller {
    private static final long[] ROOT = {0, 0};
    private static final ThreadLocal<State> CURRENT = ThreadLocal.withInitial(State::new);

    private static final class State {
        Supplier<long[]> source;
        long[] ids = ROOT;
    }

    private Caller() {
    }

    /** Sets the caller for the rest of this thread's request. */
    public static void set(long uid, long gid) {
        State s = CURRENT.get();
        s.source = null;
        s.ids = new long[] {uid, gid};
    }

    /** The caller of this thread's request is {@code {uid, gid}} from {@code source}, asked on first use. */
    public static void fromRequest(Supplier<long[]> source) {
        CURRENT.get().source = source;
    }

    private static long[] ids() {
        State s = CURRENT.get();
        if (s.source != null) {
            s.ids = s.source.get();
            s.source = null;
        }
        return s.ids;
    }

    public static long uid() {
        return ids()[0];
    }

    public static long gid() {
        return ids()[1];
    }

    /** Root, as the stand-in for CAP_SYS_ADMIN and CAP_SYS_RESOURCE. */
    public static boolean isRoot() {
        return uid() == 0;
    }
}
