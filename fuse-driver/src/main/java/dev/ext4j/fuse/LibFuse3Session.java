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
    /** struct fuse_in_header: len at 0, opcode at 4; 40 bytes. */
    private static final int IN_LEN = 0, IN_OPCODE = 4, IN_HEADER_SIZE = 40;

    private final LibFuse3 lib;
    private final Pointer se;
    /** The argument strings fuse_session_new() was given, kept while the session may refer to them. */
    private final List<Pointer> argMemory;
    private volatile boolean unmounted;
    private volatile boolean killPrivV2;

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
        LibFuse3Session session = new LibFuse3Session(lib, se, keep);
        session.init();
        return session;
    }

    /** struct fuse_init_in's flags (after the request header); struct fuse_init_out's (after fuse_out_header). */
    private static final int INIT_IN_FLAGS = IN_HEADER_SIZE + 12, OUT_ERROR = 4, INIT_OUT_FLAGS = 16 + 12;
    /** FUSE_HANDLE_KILLPRIV_V2 (protocol 7.33): the server clears setuid and setgid when a WRITE or SETATTR says so. */
    static final int HANDLE_KILLPRIV_V2 = 1 << 28;

    /**
     * Answers the kernel's INIT, the first request of a mount, before any worker reads: libfuse
     * negotiates it, and its reply is taken through a pipe to add FUSE_HANDLE_KILLPRIV_V2, which
     * libfuse 3.14 cannot ask for. Without it the kernel's SB_NOSEC is off, and every WRITE costs
     * a GETXATTR of security.capability before it (file_remove_privs()); with it the kernel asks
     * once per inode and leaves clearing setuid and setgid to the WRITE and SETATTR that carry
     * FUSE_WRITE_KILL_SUIDGID and FATTR_KILL_SUIDGID ({@link #killsSetid}).
     */
    private void init() {
        LibC c = LibC.C;
        Pointer buf = Runtime.getSystemRuntime().getMemoryManager().allocateDirect(LibFuse3.BUF_STRUCT_SIZE, true);
        if (lib.fuse_session_receive_buf(se, buf) <= 0) {
            return; // unmounted at once: the loop sees the session ended
        }
        Pointer mem = buf.getPointer(LibFuse3.BUF_MEM);
        try {
            if (mem.getInt(IN_OPCODE) == FUSE_INIT && (mem.getInt(INIT_IN_FLAGS) & HANDLE_KILLPRIV_V2) != 0) {
                killPrivV2 = answerInit(c, buf);
            } else {
                lib.fuse_session_process_buf(se, buf); // a kernel before 5.11 clears setuid and setgid itself
            }
        } finally {
            c.free(mem); // the buffer libfuse allocated for this receive
        }
    }

    /** libfuse answers INIT {@code buf} into a pipe in the device's place; its reply goes on with HANDLE_KILLPRIV_V2. */
    private boolean answerInit(LibC c, Pointer buf) {
        int fd = fd();
        int saved = c.dup(fd);
        int[] pipe = new int[2];
        if (saved < 0 || c.pipe(pipe) != 0) {
            LOG.log(Level.WARNING, "no pipe for the INIT reply: every write will cost a GETXATTR round trip");
            if (saved >= 0) {
                c.close(saved);
            }
            lib.fuse_session_process_buf(se, buf);
            return false;
        }
        byte[] reply = new byte[4096];
        long n;
        try {
            c.dup2(pipe[1], fd);
            try {
                lib.fuse_session_process_buf(se, buf);
            } finally {
                c.dup2(saved, fd);
                c.close(saved);
                c.close(pipe[1]);
            }
            n = c.read(pipe[0], reply, reply.length);
        } finally {
            c.close(pipe[0]);
        }
        java.nio.ByteBuffer r = java.nio.ByteBuffer.wrap(reply).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        boolean granted = n >= INIT_OUT_FLAGS + 4 && r.getInt(OUT_ERROR) == 0;
        if (granted) {
            r.putInt(INIT_OUT_FLAGS, r.getInt(INIT_OUT_FLAGS) | HANDLE_KILLPRIV_V2);
        }
        if (n <= 0 || c.write(fd, reply, n) != n) {
            LOG.log(Level.ERROR, "answering the kernel's INIT failed: the mount will not work");
        }
        return granted;
    }

    /**
     * Whether the kernel leaves clearing setuid and setgid to ext4j: where a WRITE or truncate
     * asks, and on fallocate and copy_file_range, whose requests do not say.
     */
    boolean killPrivV2() {
        return killPrivV2;
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
                int opcode = mem.getInt(IN_OPCODE);
                int facts = 0;
                if (opcode == FUSE_TMPFILE) {
                    asCreate(mem, buf);
                    facts = TMPFILE;
                } else if (opcode == FUSE_WRITE && (mem.getInt(WRITE_IN_FLAGS) & WRITE_KILL_SUIDGID) != 0) {
                    facts = KILL_SETID; // write_flags, which libfuse 3.14 does not pass on
                }
                int[] mine = FACTS.get();
                mine[0] = facts;
                try {
                    lib.fuse_session_process_buf(se, buf);
                } finally {
                    mine[0] = 0;
                }
            }
        };
    }

    private static final int FUSE_WRITE = 16, FUSE_INIT = 26, FUSE_CREATE = 35, FUSE_TMPFILE = 51;
    /** struct fuse_create_in, the argument of both CREATE and TMPFILE. */
    private static final int CREATE_IN_SIZE = 16;
    /** struct fuse_write_in's write_flags, after the request header, and its FUSE_WRITE_KILL_SUIDGID. */
    private static final int WRITE_IN_FLAGS = IN_HEADER_SIZE + 20, WRITE_KILL_SUIDGID = 1 << 2;
    /** What this thread's request says beyond what libfuse passes to the callback: bits below. */
    private static final ThreadLocal<int[]> FACTS = ThreadLocal.withInitial(() -> new int[1]);
    private static final int TMPFILE = 1, KILL_SETID = 2;

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
        return (FACTS.get()[0] & TMPFILE) != 0;
    }

    /**
     * Whether the WRITE this thread serves asks the filesystem to clear setuid and setgid, the
     * caller lacking CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2, see {@link #init}); a truncate says so in
     * setattr's to_set ({@link LibFuse3#SET_ATTR_KILL_SUIDGID}).
     */
    static boolean killsSetid() {
        return (FACTS.get()[0] & KILL_SETID) != 0;
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
