package dev.ext4j.fuse;

import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.provider.MemoryManager;

/** libfuse 3's session under {@link FuseLoop}: the default transport, with the cache notifications. */
final class LibFuse3Session implements FuseLoop.Session {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final LibFuse3 lib;
    private final Pointer se;
    /** The argument strings fuse_session_new() was given, kept while the session may refer to them. */
    private final List<Pointer> argMemory;
    private volatile boolean unmounted;

    private LibFuse3Session(LibFuse3 lib, Pointer se, List<Pointer> argMemory) {
        this.lib = lib;
        this.se = se;
        this.argMemory = argMemory;
    }

    /**
     * A session over the callback table {@code ops} ({@code slots} pointers), mounted on
     * {@code mnt} with libfuse's command line {@code options} ("-o", "...", "-d").
     */
    static LibFuse3Session mount(LibFuse3 lib, Pointer ops, int slots, Path mnt, List<String> options) {
        MemoryManager memory = Runtime.getSystemRuntime().getMemoryManager();
        List<String> argv = new ArrayList<>(List.of("ext4j"));
        argv.addAll(options);
        List<Pointer> keep = new ArrayList<>();
        Pointer vector = memory.allocateDirect((long) (argv.size() + 1) * 8, true);
        for (int i = 0; i < argv.size(); i++) {
            byte[] b = argv.get(i).getBytes(StandardCharsets.ISO_8859_1); // one char per byte, as paths are read
            Pointer s = memory.allocateDirect(b.length + 1, true);
            s.put(0, b, 0, b.length);
            keep.add(s);
            vector.putAddress((long) i * 8, s.address());
        }
        keep.add(vector);
        Pointer args = memory.allocateDirect(LibFuse3.ARGS_SIZE, true);
        args.putInt(LibFuse3.ARGS_ARGC, argv.size());
        args.putAddress(LibFuse3.ARGS_ARGV, vector.address());
        keep.add(args);
        Pointer se = lib.fuse_session_new(args, ops, (long) slots * Runtime.getSystemRuntime().addressSize(), null);
        if (se == null) {
            throw new IllegalStateException("libfuse 3 refused the options " + options + " (its reason is printed above)");
        }
        if (lib.fuse_session_mount(se, mnt.toString()) != 0) {
            lib.fuse_session_destroy(se);
            throw new IllegalStateException("libfuse 3 could not mount on " + mnt + " (its reason is printed above)");
        }
        return new LibFuse3Session(lib, se, keep);
    }

    @Override
    public int fd() {
        return lib.fuse_session_fd(se);
    }

    @Override
    public boolean exited() {
        return lib.fuse_session_exited(se) != 0;
    }

    @Override
    public FuseLoop.Receiver receiver() {
        // struct fuse_buf with mem NULL: libfuse allocates the worker's buffer on the first receive and keeps it
        Pointer buf = Runtime.getSystemRuntime().getMemoryManager().allocateDirect(LibFuse3.BUF_STRUCT_SIZE, true);
        return new FuseLoop.Receiver() {
            @Override
            public int receive() {
                return lib.fuse_session_receive_buf(se, buf);
            }

            @Override
            public void process(int length) {
                Pointer mem = buf.getPointer(LibFuse3.BUF_MEM);
                boolean tmpfile = mem.getInt(IN_OPCODE) == FUSE_TMPFILE;
                if (tmpfile) {
                    asCreate(mem, buf);
                }
                TMPFILE.set(tmpfile);
                try {
                    lib.fuse_session_process_buf(se, buf);
                } finally {
                    TMPFILE.set(false);
                }
            }
        };
    }

    /** struct fuse_in_header: len at 0, opcode at 4; 40 bytes. */
    private static final int IN_LEN = 0, IN_OPCODE = 4, IN_HEADER_SIZE = 40;
    private static final int FUSE_CREATE = 35, FUSE_TMPFILE = 51;
    /** struct fuse_create_in, the argument of both CREATE and TMPFILE. */
    private static final int CREATE_IN_SIZE = 16;
    private static final ThreadLocal<Boolean> TMPFILE = ThreadLocal.withInitial(() -> false);

    /**
     * O_TMPFILE: libfuse 3.14 knows no FUSE_TMPFILE (the kernel sends it since Linux 6.1), but the
     * request is a CREATE without a name, and its reply is CREATE's. So it is handed to libfuse as
     * a CREATE of the empty name, and the create callback asks {@link #isTmpfile}.
     */
    private static void asCreate(Pointer mem, Pointer buf) {
        mem.putInt(IN_OPCODE, FUSE_CREATE);
        mem.putByte(IN_HEADER_SIZE + CREATE_IN_SIZE, (byte) 0);
        mem.putInt(IN_LEN, IN_HEADER_SIZE + CREATE_IN_SIZE + 1);
        buf.putLong(LibFuse3.BUF_SIZE, IN_HEADER_SIZE + CREATE_IN_SIZE + 1);
    }

    /** Whether the CREATE this thread serves is an O_TMPFILE open. */
    static boolean isTmpfile() {
        return TMPFILE.get();
    }

    @Override
    public void teardown() {
        unmounted = true;
        lib.fuse_session_unmount(se);
        lib.fuse_session_destroy(se);
        argMemory.clear();
    }

    /** Drops the kernel's cached attributes of node {@code node} (not its pages); ENOENT (not cached) is not an error. */
    void notifyInode(long node) {
        if (!unmounted) {
            report("inode " + node, lib.fuse_lowlevel_notify_inval_inode(se, node, -1, 0));
        }
    }

    /** Drops the kernel's dentry of {@code name} in directory node {@code parent}. */
    void notifyEntry(long parent, byte[] name) {
        if (!unmounted) {
            report("entry in " + parent, lib.fuse_lowlevel_notify_inval_entry(se, parent, java.util.Arrays.copyOf(name, name.length + 1),
                    name.length));
        }
    }

    private static void report(String what, int res) {
        if (res != 0 && res != -2) {
            LOG.log(Level.DEBUG, "telling the kernel that {0} changed failed: errno {1}", what, -res);
        }
    }
}
