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
 *
 * <p>fakeroot (fuse2fs's option of that name): the adapter may name one uid that counts as root
 * in every policy ({@link #isRoot}) while keeping its own uid and gid, which new inodes get.
 */
public final class Caller {
    private static final long[] ROOT = {0, 0};
    private static final ThreadLocal<State> CURRENT = ThreadLocal.withInitial(State::new);

    private static final class State {
        Supplier<long[]> source;
        long[] ids = ROOT;
        /** The uid treated as root (fakeroot), -1 for none. */
        long fakeRootUid = -1;
    }

    private Caller() {
    }

    /** Sets the caller for the rest of this thread's request. */
    public static void set(long uid, long gid) {
        State s = CURRENT.get();
        s.source = null;
        s.ids = new long[] {uid, gid};
        s.fakeRootUid = -1;
    }

    /** The caller of this thread's request is {@code {uid, gid}} from {@code source}, asked on first use. */
    public static void fromRequest(Supplier<long[]> source) {
        fromRequest(source, -1);
    }

    /**
     * As {@link #fromRequest(Supplier)}, with {@code fakeRootUid} (-1: none) treated as root by
     * {@link #isRoot}.
     */
    public static void fromRequest(Supplier<long[]> source, long fakeRootUid) {
        State s = CURRENT.get();
        s.source = source;
        s.fakeRootUid = fakeRootUid;
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

    /** Root, as the stand-in for CAP_SYS_ADMIN and CAP_SYS_RESOURCE; also the fakeroot uid. */
    public static boolean isRoot() {
        long uid = uid();
        return uid == 0 || uid == CURRENT.get().fakeRootUid;
    }
}
