package dev.ext4j.fuse;

import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import jnr.ffi.provider.MemoryManager;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import ru.serce.jnrfuse.AbstractFuseFS;

/**
 * Serves a FUSE mount from Java threads (libfuse's fuse_loop_mt(), rebuilt on its session API), for
 * either transport: libfuse 2's channels or libfuse 3's sessions ({@link Session}).
 *
 * <p>Why not fuse_main(): its worker threads are native, and jffi attaches a native thread to the
 * JVM for each callback and detaches it afterwards, which costs more than most ext4 operations. A
 * Java thread is attached for good, so each worker here receives requests itself and hands them to
 * libfuse's request processing, which calls back into Java on the same thread.
 *
 * <p>One worker at a time, the reader, takes requests from /dev/fuse and serves each on its own
 * thread. Between requests it polls the non-blocking device for a while before it sleeps in
 * poll(): a client that sends one request after another (cp, tar, a build) finds the reader awake,
 * and the kernel does not wake a server thread for each request. With fuse_loop_mt()'s shape, every
 * worker asleep in read(), that wakeup and the switch to the woken thread were a quarter of the
 * server's time in cp -a on two cores. The other workers wait in Java, not on the device, since
 * each request wakes one thread asleep there. How long the reader polls follows the client
 * ({@link #spinNanos}): {@link #MAX_SPIN_NANOS} while its pauses between requests are mostly
 * shorter than that, {@link #MIN_SPIN_NANOS} once they are mostly longer, so an idle mount polls
 * no more than a busy one needs. While it polls it yields its CPU to any thread waiting for one.
 *
 * <p>One of them, the successor, becomes the reader when the reader lets go: at once when more
 * requests are queued than the one it took, or when it has spent {@link #HANDOFF_NANOS} on one
 * request. A request that waits, for a thaw, an fsync or a lock, so never holds up the rest, and
 * the successor's timer is the only wakeup a serial client costs.
 */
public final class FuseLoop {
    private static final System.Logger LOG = System.getLogger("ext4j");
    private static final int EINTR = 4;
    private static final int EAGAIN = 11;
    private static final int ECONNABORTED = 103;
    private static final int F_GETFL = 3;
    private static final int F_SETFL = 4;
    private static final int O_NONBLOCK = 0x800;
    private static final short POLLIN = 1;

    /** Whether the reader polls between requests at all: not on one CPU, where it would keep the client from running. */
    private static final boolean SPIN = java.lang.Runtime.getRuntime().availableProcessors() > 1;
    /**
     * The reader's shortest and longest poll for the next request before it sleeps. A shell loop
     * that makes files (fsbench's create) pauses longer than 50 µs once per file or so: polling
     * 50 µs at most, the server's threads went to sleep 0.7-1.9 times per file (voluntary context
     * switches), against 0.3 times polling up to 1 ms.
     */
    static final long MIN_SPIN_NANOS = 50_000, MAX_SPIN_NANOS = 1_000_000;
    /** How long the reader may serve one request before the successor reads in its place. */
    private static final long HANDOFF_NANOS = 1_000_000;

    /**
     * How one libfuse takes requests from /dev/fuse and hands them to its callbacks: libfuse 2's
     * channel API ({@link LibFuse2Session}) or libfuse 3's session API ({@link Ext4LowLevel}).
     */
    public interface Session {
        /** The /dev/fuse descriptor, which the loop makes non-blocking. */
        int fd();

        /** Whether the session has ended (unmounted). */
        boolean exited();

        /** A worker's own receive buffer. */
        Receiver receiver();

        /** Unmounts if still mounted and frees the session; after the last worker ended. */
        void teardown();
    }

    /** One worker's buffer: receives a request into it and processes it on the calling thread. */
    public interface Receiver {
        /** The request's length, {@code -errno} (-EAGAIN on an empty device), or 0 once the session ended. */
        int receive();

        /** Hands the request just received to the callbacks. */
        void process(int length);
    }

    /** Who reads /dev/fuse, and since when it serves the request it took (0 while it waits for one). */
    private record Turn(Thread reader, long busySince) {
        static final Turn NOBODY = new Turn(null, 0);
    }

    private final Session session;
    private final int fd;

    /** Most workers ever started: a worker is added when none is left to take the reader's place. */
    private static final int MAX_WORKERS = 256;
    private final List<Thread> workers = new CopyOnWriteArrayList<>();
    private final AtomicReference<Turn> turn = new AtomicReference<>(Turn.NOBODY);
    /** Held by the successor; the other idle workers queue on it. */
    private final ReentrantLock successorLock = new ReentrantLock();
    private volatile Thread successor;
    /**
     * The client's recent pause between requests ({@link #averagePause}), kept by whichever worker
     * reads; a lost update only moves the average a little.
     */
    private volatile long pauseNanos = MIN_SPIN_NANOS;
    /** The reader sleeps in poll(): no request to time, so the successor sleeps until it wakes. */
    private volatile boolean readerAsleep;
    private volatile boolean stopped;

    /** A loop over a mounted {@code session}, not yet serving. */
    public FuseLoop(Session session) {
        this.session = session;
        this.fd = session.fd();
        LibC.C.fcntl(fd, F_SETFL, LibC.C.fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    }

    /**
     * Mounts {@code fs} on {@code mnt} with libfuse 2 and its command line {@code options} (e.g.
     * "-o", "ro,fsname=..."), in the foreground; returns the loop, not yet serving.
     */
    public static FuseLoop mount(AbstractFuseFS fs, Struct operations, Path mnt, List<String> options) {
        return new FuseLoop(LibFuse2Session.mount(operations, mnt, options));
    }

    /** Serves requests on {@code threads} Java threads (more when all are busy) until the filesystem is unmounted, then tears down. */
    public void serve(int threads) {
        for (int i = 0; i < Math.max(2, threads); i++) {
            startWorker();
        }
        for (int joined = 0; joined < workers.size(); joined++) {
            try {
                workers.get(joined).join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        session.teardown();
    }

    private synchronized void startWorker() {
        if (workers.size() < MAX_WORKERS && !stopped) {
            Thread t = new Thread(this::work, "fuse-worker-" + workers.size());
            workers.add(t);
            t.start();
        }
    }

    private void work() {
        MemoryManager memory = Runtime.getSystemRuntime().getMemoryManager();
        Receiver buf = session.receiver();
        Pointer pollFd = memory.allocateDirect(8);
        pollFd.putInt(0, fd);
        pollFd.putShort(4, POLLIN);
        Thread me = Thread.currentThread();
        try {
            serveRequests(me, buf, pollFd);
        } finally {
            Turn t = turn.get();
            if (t.reader() == me && turn.compareAndSet(t, Turn.NOBODY)) {
                wake(successor); // a worker that dies reading (an Error out of a callback) leaves the reading to another
            }
        }
    }

    private void serveRequests(Thread me, Receiver buf, Pointer pollFd) {
        while (takeTurn(me)) {
            int res = receive(buf, pollFd);
            if (res <= 0) {
                if (res == -ECONNABORTED) {
                    // the connection was aborted: an unmount racing the last requests, or
                    // /sys/fs/fuse/connections/N/abort; the end of serving, as ENODEV is
                    LOG.log(Level.INFO, "the kernel aborted the FUSE connection");
                } else if (res < 0) {
                    LOG.log(Level.ERROR, "reading /dev/fuse failed: errno {0}", -res);
                }
                stop();
                return;
            }
            Turn serving = new Turn(me, System.nanoTime() | 1);
            turn.set(serving);
            if (LibC.C.poll(pollFd, 1, 0) > 0 && turn.compareAndSet(serving, Turn.NOBODY)) {
                wake(successor); // more requests are waiting: let the successor take the next
            }
            try {
                buf.process(res);
            } finally {
                turn.compareAndSet(serving, new Turn(me, 0));
            }
        }
    }

    /** How long the reader polls before it sleeps now ({@link #spinFor}); never on one CPU. */
    private long spinNanos() {
        return SPIN ? spinFor(pauseNanos) : 0;
    }

    /**
     * The poll for an average pause of the client: the longest while the pauses average less
     * than that, so that the long pause among short ones (a shell loop's turn between two files)
     * is polled through too; the shortest once polling would mostly wait in vain.
     */
    static long spinFor(long averagePause) {
        return averagePause > MAX_SPIN_NANOS ? MIN_SPIN_NANOS : MAX_SPIN_NANOS;
    }

    /** The average pause after one more: it follows about the last eight, each counted as at most twice {@link #MAX_SPIN_NANOS}. */
    static long averagePause(long average, long pause) {
        return average + (Math.min(pause, 2 * MAX_SPIN_NANOS) - average) / 8;
    }

    /** Reads one request as the reader: polls for {@link #spinNanos}, then sleeps in poll() until one comes. */
    private int receive(Receiver buf, Pointer pollFd) {
        long start = System.nanoTime();
        long spinUntil = start + spinNanos();
        while (!session.exited()) {
            int res = buf.receive();
            if (res != -EAGAIN && res != -EINTR) {
                pauseNanos = averagePause(pauseNanos, System.nanoTime() - start);
                return res;
            }
            if (System.nanoTime() - spinUntil < 0) {
                Thread.yield(); // a client or a flusher waiting for this CPU runs first
                continue;
            }
            readerAsleep = true;
            LibC.C.poll(pollFd, 1, -1);
            readerAsleep = false;
            wake(successor);
            spinUntil = System.nanoTime() + spinNanos();
        }
        return 0;
    }

    /**
     * Returns once {@code me} is the reader: at once if it is, else as the successor when the
     * reader lets go or has served one request for too long; false when serving has stopped.
     */
    private boolean takeTurn(Thread me) {
        if (turn.get().reader() == me) {
            return !stopped;
        }
        successorLock.lock();
        try {
            successor = me;
            while (!stopped) {
                Turn t = turn.get();
                long busy = t.busySince() == 0 ? 0 : System.nanoTime() - t.busySince();
                if (t.reader() == null || busy >= HANDOFF_NANOS) {
                    if (turn.compareAndSet(t, new Turn(me, 0))) {
                        if (!successorLock.hasQueuedThreads()) {
                            startWorker(); // the others all serve requests: one must watch this reader
                        }
                        return true;
                    }
                } else if (busy > 0) {
                    LockSupport.parkNanos(this, HANDOFF_NANOS - busy);
                } else if (readerAsleep) {
                    LockSupport.park(this); // until the reader wakes (receive)
                } else {
                    LockSupport.parkNanos(this, HANDOFF_NANOS);
                }
            }
            return false;
        } finally {
            successor = null;
            successorLock.unlock();
        }
    }

    private void stop() {
        stopped = true;
        wake(successor);
    }

    private static void wake(Thread t) {
        if (t != null) {
            LockSupport.unpark(t);
        }
    }
}
