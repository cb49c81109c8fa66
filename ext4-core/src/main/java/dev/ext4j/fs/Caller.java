package dev.ext4j.fs;

/**
 * Who is asking: the user and group of the process behind the request the current thread serves.
 * The policies that depend on it read it here (the blocks reserved for root, the trusted.* xattr
 * namespace); permission checks themselves are the kernel's (default_permissions). Root unless the
 * FUSE adapter sets it.
 */
public final class Caller {
    private static final ThreadLocal<long[]> CURRENT = ThreadLocal.withInitial(() -> new long[] {0, 0});

    private Caller() {
    }

    /** Sets the caller for the rest of this thread's request. */
    public static void set(long uid, long gid) {
        long[] c = CURRENT.get();
        c[0] = uid;
        c[1] = gid;
    }

    static long uid() {
        return CURRENT.get()[0];
    }

    static long gid() {
        return CURRENT.get()[1];
    }

    /** Root, as the stand-in for CAP_SYS_ADMIN and CAP_SYS_RESOURCE. */
    static boolean isRoot() {
        return uid() == 0;
    }
}
