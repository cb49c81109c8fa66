package dev.ext4j.fuse;

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

/** libfuse 2's channel API under {@link FuseLoop}: the transport of {@code -o transport=libfuse2}. */
final class LibFuse2Session implements FuseLoop.Session {

    /** The libfuse 2 functions used here, bound with jnr-ffi. */
    public interface Lib {
        Pointer fuse_setup(int argc, String[] argv, Pointer op, @size_t long opSize, PointerByReference mountpoint,
                           IntByReference multithreaded, Pointer userData);

        void fuse_teardown(Pointer fuse, Pointer mountpoint);

        Pointer fuse_get_session(Pointer fuse);

        Pointer fuse_session_next_chan(Pointer se, Pointer ch);

        @size_t long fuse_chan_bufsize(Pointer ch);

        int fuse_chan_fd(Pointer ch);

        int fuse_chan_recv(PointerByReference ch, Pointer buf, @size_t long size);

        void fuse_session_process(Pointer se, Pointer buf, @size_t long len, Pointer ch);

        int fuse_session_exited(Pointer se);
    }

    private final Lib lib;
    private final Pointer fuse;
    private final Pointer mountpoint;
    private final Pointer session;
    private final Pointer channel;
    private final long bufSize;

    private LibFuse2Session(Lib lib, Pointer fuse, Pointer mountpoint) {
        this.lib = lib;
        this.fuse = fuse;
        this.mountpoint = mountpoint;
        this.session = lib.fuse_get_session(fuse);
        this.channel = lib.fuse_session_next_chan(session, null);
        this.bufSize = lib.fuse_chan_bufsize(channel);
    }

    /** Mounts with fuse_setup(), in the foreground, with the callback table {@code operations}. */
    static LibFuse2Session mount(Struct operations, Path mnt, List<String> options) {
        Lib lib = LibraryLoader.create(Lib.class).failImmediately().load("fuse");
        List<String> argv = new ArrayList<>(List.of("ext4j", "-f"));
        argv.addAll(options);
        argv.add(mnt.toString());
        PointerByReference mp = new PointerByReference();
        Pointer f = lib.fuse_setup(argv.size(), argv.toArray(new String[0]), Struct.getMemory(operations),
                Struct.size(operations), mp, new IntByReference(), null);
        if (f == null) {
            throw new IllegalStateException("libfuse could not mount on " + mnt + " (its reason is printed above)");
        }
        return new LibFuse2Session(lib, f, mp.getValue());
    }

    @Override
    public int fd() {
        return lib.fuse_chan_fd(channel);
    }

    @Override
    public boolean exited() {
        return lib.fuse_session_exited(session) != 0;
    }

    @Override
    public FuseLoop.Receiver receiver() {
        Pointer buf = Runtime.getSystemRuntime().getMemoryManager().allocateDirect(bufSize);
        return new FuseLoop.Receiver() {
            private PointerByReference ch;

            @Override
            public int receive() {
                ch = new PointerByReference(channel);
                return lib.fuse_chan_recv(ch, buf, bufSize);
            }

            @Override
            public void process(int length) {
                lib.fuse_session_process(session, buf, length, ch.getValue());
            }
        };
    }

    @Override
    public void teardown() {
        lib.fuse_teardown(fuse, mountpoint);
    }
}
