package dev.ext4j.fuse;

import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import jnr.ffi.byref.IntByReference;
import jnr.ffi.byref.PointerByReference;
import jnr.ffi.types.size_t;
import ru.serce.jnrfuse.AbstractFuseFS;

/**
 * Serves a FUSE mount from Java threads (libfuse 2's fuse_loop_mt(), rebuilt on its session API).
 *
 * <p>Why not fuse_main(): its worker threads are native, and jffi attaches a native thread to the
 * JVM for each callback and detaches it afterwards, which costs more than most ext4 operations. A
 * Java thread is attached for good, so each worker here receives requests with fuse_chan_recv()
 * and hands them to fuse_session_process(), which calls back into Java on the same thread.
 */
public final class FuseLoop {
    private static final System.Logger LOG = System.getLogger("ext4j");
    private static final int EINTR = 4;
    private static final int EAGAIN = 11;
    private static final int ECONNABORTED = 103;

    /** The libfuse 2 functions used here, bound with jnr-ffi. */
    public interface LibFuseSession {
        Pointer fuse_setup(int argc, String[] argv, Pointer op, @size_t long opSize, PointerByReference mountpoint,
                           IntByReference multithreaded, Pointer userData);

        void fuse_teardown(Pointer fuse, Pointer mountpoint);

        Pointer fuse_get_session(Pointer fuse);

        Pointer fuse_session_next_chan(Pointer se, Pointer ch);

        @size_t long fuse_chan_bufsize(Pointer ch);

        int fuse_chan_recv(PointerByReference ch, Pointer buf, @size_t long size);

        void fuse_session_process(Pointer se, Pointer buf, @size_t long len, Pointer ch);

        int fuse_session_exited(Pointer se);
    }

    private final LibFuseSession lib;
    private final Pointer fuse;
    private final Pointer mountpoint;
    private final Pointer session;
    private final Pointer channel;
    private final long bufSize;

    /**
     * Most workers ever started. Beyond the initial ones, a worker is added whenever none is left
     * waiting for a request, as fuse_loop_mt() does: requests that wait in the server (changes held
     * by a freeze) must not leave no thread to receive the thaw.
     */
    private static final int MAX_WORKERS = 256;
    private final List<Thread> workers = new java.util.concurrent.CopyOnWriteArrayList<>();
    /** Workers waiting in fuse_chan_recv(). */
    private final java.util.concurrent.atomic.AtomicInteger idle = new java.util.concurrent.atomic.AtomicInteger();

    private FuseLoop(LibFuseSession lib, Pointer fuse, Pointer mountpoint) {
        this.lib = lib;
        this.fuse = fuse;
        this.mountpoint = mountpoint;
        this.session = lib.fuse_get_session(fuse);
        this.channel = lib.fuse_session_next_chan(session, null);
        this.bufSize = lib.fuse_chan_bufsize(channel);
    }

    /**
     * Mounts {@code fs} on {@code mnt} with libfuse's command line {@code options} (e.g. "-o",
     * "ro,fsname=..."), in the foreground; returns the loop, not yet serving.
     */
    public static FuseLoop mount(AbstractFuseFS fs, Struct operations, Path mnt, List<String> options) {
        LibFuseSession lib = LibraryLoader.create(LibFuseSession.class).failImmediately().load("fuse");
        List<String> argv = new ArrayList<>(List.of("ext4j", "-f"));
        argv.addAll(options);
        argv.add(mnt.toString());
        PointerByReference mp = new PointerByReference();
        Pointer f = lib.fuse_setup(argv.size(), argv.toArray(new String[0]), Struct.getMemory(operations),
                Struct.size(operations), mp, new IntByReference(), null);
        if (f == null) {
            throw new IllegalStateException("libfuse could not mount on " + mnt + " (its reason is printed above)");
        }
        return new FuseLoop(lib, f, mp.getValue());
    }

    /** Serves requests on {@code threads} Java threads (more when all are busy) until the filesystem is unmounted, then tears down. */
    public void serve(int threads) {
        for (int i = 0; i < threads; i++) {
            startWorker();
        }
        for (int joined = 0; joined < workers.size(); joined++) {
            try {
                workers.get(joined).join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        lib.fuse_teardown(fuse, mountpoint);
    }

    private synchronized void startWorker() {
        if (workers.size() >= MAX_WORKERS) {
            return;
        }
        Thread t = new Thread(this::work, "fuse-worker-" + workers.size());
        idle.incrementAndGet();
        workers.add(t);
        t.start();
    }

    private void work() {
        Pointer buf = Runtime.getSystemRuntime().getMemoryManager().allocateDirect(bufSize);
        try {
            receive(buf);
        } finally {
            idle.decrementAndGet();
        }
    }

    private void receive(Pointer buf) {
        while (lib.fuse_session_exited(session) == 0) {
            PointerByReference ch = new PointerByReference(channel);
            int res = lib.fuse_chan_recv(ch, buf, bufSize);
            if (res == -EINTR || res == -EAGAIN) {
                continue;
            }
            if (res <= 0) {
                if (res == -ECONNABORTED) {
                    // the connection was aborted: an unmount racing the last requests, or
                    // /sys/fs/fuse/connections/N/abort; the end of serving, as ENODEV is
                    LOG.log(Level.INFO, "the kernel aborted the FUSE connection");
                } else if (res < 0) {
                    LOG.log(Level.ERROR, "reading /dev/fuse failed: errno {0}", -res);
                }
                break;
            }
            if (idle.decrementAndGet() == 0) {
                startWorker();
            }
            try {
                lib.fuse_session_process(session, buf, res, ch.getValue());
            } finally {
                idle.incrementAndGet();
            }
        }
    }
}
