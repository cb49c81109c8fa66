package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The freeze gate (the kernel's sb_start_write() / sb_end_write() around every change, and
 * freeze_super() / thaw_super()). Every operation that changes the filesystem passes through
 * {@link #enter()} before it takes any inode lock (see {@link InodeLocks} for the order) and
 * {@link #exit()} after it released them. {@link #freeze()} lets no new change in, then waits
 * until the changes in flight have left; changes that arrive meanwhile wait (they do not fail)
 * until {@link #thaw()}.
 *
 * <p>Nested entry by the same thread (a change that calls another public change) is counted per
 * thread and never waits, so a thread that holds the gate cannot deadlock against a freeze that
 * is waiting for it to leave. Not a ReentrantReadWriteLock: a freeze is started and ended by
 * different requests, which run on different threads.
 *
 * <p>For {@link LockOrder}, a thread inside the gate holds it (level WRITE_GATE, the outermost);
 * the frozen state is no lock held by anyone, but {@link #freeze()} itself waits for every thread
 * inside to leave, so it is checked like taking the gate: the freezer must hold no lock.
 */
final class WriteGate {
    private final ReentrantLock lock = new ReentrantLock(true);
    private final Condition changed = lock.newCondition();
    /** Threads inside the gate. */
    private int active;
    /** Set from the start of a freeze until its thaw: new entries wait. */
    private boolean frozen;
    private final ThreadLocal<int[]> depth = ThreadLocal.withInitial(() -> new int[1]);

    /** sb_start_write(): waits while the filesystem is frozen. */
    void enter() {
        int[] d = depth.get();
        if (d[0] > 0) {
            d[0]++;
            return;
        }
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.WRITE_GATE, -1);
        }
        lock.lock();
        try {
            while (frozen) {
                changed.awaitUninterruptibly();
            }
            active++;
        } finally {
            lock.unlock();
        }
        d[0] = 1;
    }

    /** sb_start_write_trylock(): enters unless the filesystem is frozen; false then, at once. */
    boolean tryEnter() {
        int[] d = depth.get();
        if (d[0] > 0) {
            d[0]++;
            return true;
        }
        lock.lock();
        try {
            if (frozen) {
                return false;
            }
            active++;
        } finally {
            lock.unlock();
        }
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.WRITE_GATE, -1);
        }
        d[0] = 1;
        return true;
    }

    /** sb_end_write(). */
    void exit() {
        int[] d = depth.get();
        if (--d[0] > 0) {
            return;
        }
        depth.remove();
        lock.lock();
        try {
            if (--active == 0) {
                changed.signalAll();
            }
        } finally {
            lock.unlock();
        }
        if (LockOrder.ENABLED) {
            LockOrder.release(LockOrder.Level.WRITE_GATE, -1);
        }
    }

    /**
     * Closes the gate and waits until no change is in flight. EBUSY when already frozen, or when
     * the calling thread is inside the gate itself (it would wait for itself).
     */
    void freeze() throws Ext4Exception {
        if (depth.get()[0] > 0) {
            throw new Ext4Exception(Errno.EBUSY, "cannot freeze from inside a change");
        }
        if (LockOrder.ENABLED) {
            LockOrder.acquire(LockOrder.Level.WRITE_GATE, "write gate (freezing)", -1);
            LockOrder.release(LockOrder.Level.WRITE_GATE, "write gate (freezing)", -1);
        }
        lock.lock();
        try {
            if (frozen) {
                throw new Ext4Exception(Errno.EBUSY, "the filesystem is frozen already");
            }
            frozen = true;
            while (active > 0) {
                changed.awaitUninterruptibly();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Opens the gate and wakes the changes that waited; EINVAL when it was not closed. */
    void thaw() throws Ext4Exception {
        lock.lock();
        try {
            if (!frozen) {
                throw new Ext4Exception(Errno.EINVAL, "the filesystem is not frozen");
            }
            frozen = false;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Whether a change is in flight (a thread is inside the gate). */
    boolean busy() {
        lock.lock();
        try {
            return active > 0;
        } finally {
            lock.unlock();
        }
    }

    boolean isFrozen() {
        lock.lock();
        try {
            return frozen;
        } finally {
            lock.unlock();
        }
    }

    /** A passage through the write gate, left by close(). */
    interface Entered extends AutoCloseable {
        @Override
        void close();
    }
}
