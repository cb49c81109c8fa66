package dev.ext4j.fs;

import java.util.function.Supplier;

/**
 * Who is asking: the user and group of the process behind the request the current thread serves.
 * The policies that depend on it read it here (the blocks reserved for root, the trusted.* xattr
 * namespace), and so do {@link Permissions}' checks where the kernel does not make them itself
 * (most mounts have default_permissions). Root unless the adapter says otherwise.
 *
 * <p>The adapter marks each request with {@link #fromRequest} and the credentials are fetched only
 * when a policy asks, since most requests never need them.
 *
 * <p>fakeroot (fuse2fs's option of that name): the adapter may name one uid that counts as root
 * in every policy ({@link #isRoot}) while keeping its own uid and gid, which new inodes get.
 *
 * <p>Supplementary groups ({@link #inGroup}, in_group_p()) come from a second source the adapter
 * may give, also asked on first use; without one only the primary group counts.
 */
public final class Caller {
    private static final long[] ROOT = {0, 0};
    private static final ThreadLocal<State> CURRENT = ThreadLocal.withInitial(State::new);

    private static final class State {
        Supplier<long[]> source;
        long[] ids = ROOT;
        /** The uid treated as root (fakeroot), -1 for none. */
        long fakeRootUid = -1;
        Supplier<long[]> groupSource;
        long[] groups = NONE;
    }

    private static final long[] NONE = {};

    private Caller() {
    }

    /** Sets the caller for the rest of this thread's request. */
    public static void set(long uid, long gid, long... groups) {
        State s = CURRENT.get();
        s.source = null;
        s.ids = new long[] {uid, gid};
        s.fakeRootUid = -1;
        s.groupSource = null;
        s.groups = groups.clone();
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
        fromRequest(source, fakeRootUid, null);
    }

    /**
     * As {@link #fromRequest(Supplier, long)}, with the caller's supplementary groups from {@code
     * groups} (null: none), asked when a check first needs them.
     */
    public static void fromRequest(Supplier<long[]> source, long fakeRootUid, Supplier<long[]> groups) {
        State s = CURRENT.get();
        s.source = source;
        s.fakeRootUid = fakeRootUid;
        s.groupSource = groups;
        s.groups = NONE;
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

    /** in_group_p(): whether {@code gid} is the caller's group or one of its supplementary groups. */
    public static boolean inGroup(long gid) {
        if (gid == gid()) {
            return true;
        }
        State s = CURRENT.get();
        if (s.groupSource != null) {
            s.groups = s.groupSource.get();
            s.groupSource = null;
        }
        for (long g : s.groups) {
            if (g == gid) {
                return true;
            }
        }
        return false;
    }

    /** Root, as the stand-in for CAP_SYS_ADMIN and CAP_SYS_RESOURCE; also the fakeroot uid. */
    public static boolean isRoot() {
        long uid = uid();
        return uid == 0 || uid == CURRENT.get().fakeRootUid;
    }
}
