package dev.ext4j;

import java.util.ArrayList;
import java.util.List;

/**
 * A lock-order checker, a much simplified lockdep (the kernel's kernel/locking/lockdep.c): every
 * lock of the core belongs to a {@link Level}, and a thread may only take a lock of a later level
 * than every lock it holds. Taking one of an earlier or the same level fails at once with an
 * {@link IllegalStateException} naming both locks, whether or not another thread is there to
 * deadlock with, so a wrong order shows up in any test that takes the path. Exceptions: re-entry
 * into a lock the thread holds (it cannot wait), and inode locks taken in ascending inode number
 * (as {@code InodeLocks.lockAll} takes them). Taking a shared lock's exclusive side while holding
 * its shared side (a read-to-write upgrade, which waits for itself) fails too.
 *
 * <p>Off unless the system property {@code ext4j.lockcheck} is {@code true}; callers test
 * {@link #ENABLED}, a constant the JIT folds, so the hooks cost nothing when it is off. The held
 * locks are kept per thread: a lock must be released by the thread that took it. State that is
 * not a lock (a frozen write gate, which one request sets and another clears) is not tracked.
 *
 * <p>Explicit locks call {@link #acquire} before they lock and {@link #release} after they unlock.
 * A {@code synchronized} block names its monitor through {@link #monitor}, which checks and
 * records it; the record lapses once the thread no longer holds the monitor
 * ({@link Thread#holdsLock}), so the block needs no release call.
 */
public final class LockOrder {
    /** {@code -Dext4j.lockcheck=true}: read once. */
    public static final boolean ENABLED = Boolean.getBoolean("ext4j.lockcheck");

    /** The core's locks from outermost to innermost (the order written down in InodeLocks). */
    public enum Level {
        /** WriteGate: sb_start_write(). */
        WRITE_GATE("write gate"),
        /** OnlineResize's running lock. */
        RESIZE("online resize"),
        /** InodeLocks' rename lock (s_vfs_rename_mutex). */
        RENAME("rename lock"),
        /** An inode's read-write lock (i_rwsem); several only in ascending inode order. */
        INODE("inode"),
        /** A journal handle (jbd2_journal_start()), or the commit a starter runs when the transaction is full. */
        JOURNAL("journal handle"),
        /** The orphan list's monitor (s_orphan_lock). */
        ORPHANS("orphan list"),
        /**
         * The delayed-allocation reserve's lock: shared by a writeback from its allocation of
         * promised blocks to the release of their promise (an error it meets then may mark the
         * superblock), exclusive for a reading of free blocks less promised ones (statfs, a new
         * promise), which takes no other lock.
         */
        RESERVE("delayed-allocation reserve"),
        /**
         * The superblock's monitor. Before the group locks: the free counts are summed group by
         * group under it (Allocator.writeCounts at an online resize step and at unmount).
         */
        SUPERBLOCK("superblock"),
        /** One allocator group's lock (ext4_lock_group()); never two at once. */
        GROUP("group"),
        /** An inode's install lock (the inode hash lock around iget). */
        INSTALL("install lock of inode"),
        /** The block cache's flush lock. */
        FLUSH("block cache flush"),
        /** The block cache's per-block lock (lock_buffer()). */
        BLOCK("block"),
        /** The journal's state monitor (j_state_lock). */
        JOURNAL_STATE("journal state");

        private final String label;

        Level(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    /** One held lock: a level, a what (a label, compared by identity) and a number, or a monitor. */
    private static final class Held {
        final Level level;
        final String what;
        final long id;
        final Object monitor;
        final boolean shared;
        int count = 1;

        Held(Level level, String what, long id, Object monitor, boolean shared) {
            this.level = level;
            this.what = what;
            this.id = id;
            this.monitor = monitor;
            this.shared = shared;
        }

        boolean is(Level l, String w, long i) {
            return level == l && what.equals(w) && id == i;
        }

        @Override
        public String toString() {
            return name(what, id) + (shared ? " (shared)" : "");
        }
    }

    private static final ThreadLocal<List<Held>> HELD = ThreadLocal.withInitial(ArrayList::new);

    private LockOrder() {
    }

    private static String name(String what, long id) {
        return id < 0 ? what : what + " " + id;
    }

    /** Before taking lock {@code id} (-1: the only one) of {@code level}, exclusively. */
    public static void acquire(Level level, long id) {
        check(level, level.label, id, null, false);
    }

    /** Before taking a lock of {@code level} named {@code what} (a constant) and {@code id} (-1: none). */
    public static void acquire(Level level, String what, long id) {
        check(level, what, id, null, false);
    }

    /** Before taking the shared side of lock {@code id} of {@code level}. */
    public static void acquireShared(Level level, long id) {
        check(level, level.label, id, null, true);
    }

    /**
     * For {@code synchronized (LockOrder.monitor(level, id, m))}: checks the order and returns
     * {@code m}. Use it only as the monitor expression: the record lasts while the thread holds
     * {@code m}.
     */
    public static <T> T monitor(Level level, long id, T m) {
        if (ENABLED) {
            check(level, level.label, id, m, false);
        }
        return m;
    }

    /** After unlocking lock {@code id} of {@code level} (taken with {@link #acquire(Level, long)} or shared). */
    public static void release(Level level, long id) {
        release(level, level.label, id);
    }

    /** After unlocking a lock taken with {@link #acquire(Level, String, long)}. */
    public static void release(Level level, String what, long id) {
        List<Held> held = HELD.get();
        for (int i = held.size() - 1; i >= 0; i--) {
            Held h = held.get(i);
            if (h.monitor == null && h.is(level, what, id)) {
                if (--h.count == 0) {
                    held.remove(i);
                }
                return;
            }
        }
        throw new IllegalStateException("lock order: " + Thread.currentThread().getName() + " releases "
                + name(what, id) + ", which it does not hold (held: " + held + ")");
    }

    /** What the calling thread holds, outermost first (for tests and messages). */
    public static List<String> held() {
        List<Held> held = HELD.get();
        prune(held);
        List<String> names = new ArrayList<>();
        for (Held h : held) {
            names.add(h.toString());
        }
        return names;
    }

    /** Drops the monitors the thread has left since they were recorded. */
    private static void prune(List<Held> held) {
        for (int i = held.size() - 1; i >= 0; i--) {
            Object m = held.get(i).monitor;
            if (m != null && !Thread.holdsLock(m)) {
                held.remove(i);
            }
        }
    }

    private static void check(Level level, String what, long id, Object monitor, boolean shared) {
        List<Held> held = HELD.get();
        prune(held);
        for (Held h : held) {
            if (h.is(level, what, id)) {
                if (h.shared && !shared) {
                    throw violation(h, level, what, id, "an upgrade from shared to exclusive waits for itself");
                }
                if (monitor == null) {
                    h.count++;
                }
                return; // re-entry
            }
        }
        for (Held h : held) {
            int c = h.level.compareTo(level);
            if (c > 0 || c == 0 && !(level == Level.INODE && h.id < id)) {
                throw violation(h, level, what, id, c == 0
                        ? (level == Level.INODE ? "inode locks go in ascending order" : "never two of these at once")
                        : h.level.label + " comes after " + level.label);
            }
        }
        held.add(new Held(level, what, id, monitor, shared));
    }

    private static IllegalStateException violation(Held h, Level level, String what, long id, String why) {
        return new IllegalStateException("lock order violated: " + Thread.currentThread().getName()
                + " asks for " + name(what, id) + " while holding " + h + " (" + why + "; held: "
                + HELD.get() + ")");
    }
}
