package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Caller;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FsStatus;
import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The control file: a virtual file at the mount root ({@code .ext4j-control} unless
 * {@code -o control=NAME}) through which the mounting user drives the filesystem, one command per
 * line written to it: {@code resize SIZE}, {@code freeze}, {@code thaw}, {@code migrate PATH},
 * {@code mknod PATH b|c MAJOR MINOR [MODE]}, {@code sync}, {@code remount ro|rw}, {@code status}. A write whose command fails returns {@code -errno}, so a shell's
 * {@code echo 'resize 8G' > .ext4j-control} fails visibly; reading the same open file returns the
 * reply to its last command ({@code ok ...} or {@code error ERRNO: message}), or the status when
 * no command was written on it. Each open file keeps its own reply, keyed by its FUSE file handle.
 * The reply is read as a stream: the file offset is ignored (a write moved it), reads go on where
 * the last one stopped, end of file after the reply, and a new command starts a new reply.
 *
 * <p>Only parsing and dispatch live here; what the commands do is in ext4-core.
 */
final class ControlFile {
    private static final System.Logger LOG = System.getLogger("ext4j");
    /** File handles of control file opens: far above any inode number, so never mistaken for one. */
    private static final long HANDLE_BASE = 1L << 62;
    /** st_ino shown for the file: inode 1 (bad blocks) is never reachable by a name. */
    static final long INO = 1;

    private final Ext4FileSystem fs;
    private final String path;
    /** The name as directory entries hold it, in the charset jnr-ffi uses for paths. */
    private final byte[] name;
    private final String mountPoint;
    private final long ownerUid;
    private final long ownerGid;
    private final AtomicLong nextHandle = new AtomicLong(HANDLE_BASE);
    private final ConcurrentHashMap<Long, Reply> replies = new ConcurrentHashMap<>();
    private volatile Changes changes = new Changes() {
    };

    /** What the commands changed behind the kernel's back, for a transport that can tell it. */
    interface Changes {
        /** The inode's attributes or mapping changed (migrate). */
        default void inode(long ino) {
        }

        /** A name appeared in directory {@code dirIno} (mknod). */
        default void entry(long dirIno, byte[] name) {
        }
    }

    void onChange(Changes c) {
        this.changes = c;
    }

    /** One open file's last reply and how much of it was read. */
    private static final class Reply {
        byte[] text;
        int read;

        synchronized void set(String s) {
            text = s.getBytes(StandardCharsets.ISO_8859_1); // paths in it are one char per byte
            read = 0;
        }
    }

    /**
     * @param name       the file's name at the mount root
     * @param mountPoint the absolute mount point, so that {@code migrate /mnt/disk/f} works; may be null
     * @param ownerUid   the user that mounted (the only one besides root that may open the file)
     */
    ControlFile(Ext4FileSystem fs, String name, Path mountPoint, long ownerUid, long ownerGid) {
        this.fs = fs;
        this.path = "/" + name;
        this.name = name.getBytes(java.nio.charset.Charset.defaultCharset());
        this.mountPoint = mountPoint == null ? null : new String(mountPoint.toAbsolutePath().normalize().toString()
                .getBytes(java.nio.charset.Charset.defaultCharset()), StandardCharsets.ISO_8859_1); // as commands are read
        this.ownerUid = ownerUid;
        this.ownerGid = ownerGid;
    }

    /** Whether {@code p} (a path from libfuse) names the control file. */
    boolean is(String p) {
        return path.equals(p);
    }

    /** Whether {@code name} is the control file's name in directory {@code dirIno}. */
    boolean isName(long dirIno, byte[] entry) {
        return dirIno == Ext4FileSystem.ROOT_INO && java.util.Arrays.equals(name, entry);
    }

    /** Whether an open file handle is one of the control file's. */
    boolean owns(long fh) {
        return fh >= HANDLE_BASE;
    }

    long ownerUid() {
        return ownerUid;
    }

    long ownerGid() {
        return ownerGid;
    }

    /** A new open of the file by {@code uid}: its handle, or EACCES for anyone but the owner and root. */
    long open(long uid) throws Ext4Exception {
        if (uid != ownerUid && uid != 0) {
            throw new Ext4Exception(Errno.EACCES, "the control file is only for the user that mounted (uid " + ownerUid + ")");
        }
        long fh = nextHandle.getAndIncrement();
        replies.put(fh, new Reply());
        return fh;
    }

    void release(long fh) {
        replies.remove(fh);
    }

    /**
     * Runs the commands in {@code data}, one per line; returns the byte count, or {@code -errno}
     * of the first command that failed (the ones after it are not run).
     */
    int write(long fh, byte[] data) {
        Reply reply = handle(fh);
        for (String line : new String(data, StandardCharsets.ISO_8859_1).split("\n")) { // one char per byte: paths keep their bytes
            String cmd = line.strip();
            if (cmd.isEmpty()) {
                continue;
            }
            try {
                String text = execute(cmd);
                reply.set("ok " + text + (text.endsWith("\n") ? "" : "\n")); // status ends with its own
                LOG.log(Level.INFO, "control: {0}: ok", cmd);
            } catch (Ext4Exception e) {
                reply.set("error " + e.errno() + ": " + e.getMessage() + "\n");
                LOG.log(Level.INFO, "control: {0}: {1}", cmd, e);
                return -e.errno().value();
            }
        }
        return data.length;
    }

    /** The next at most {@code size} bytes of the reply to the handle's last command, or of the status when none was given. */
    byte[] read(long fh, long size) {
        Reply reply = handle(fh);
        synchronized (reply) {
            if (reply.text == null) {
                reply.set("ok " + status());
            }
            int n = (int) Math.min(reply.text.length - reply.read, size);
            byte[] out = java.util.Arrays.copyOfRange(reply.text, reply.read, reply.read + n);
            reply.read += n;
            return out;
        }
    }

    private Reply handle(long fh) {
        return replies.computeIfAbsent(fh, k -> new Reply());
    }

    /** The commands, whether they take an argument, and whether they change the filesystem. */
    private enum Command {
        RESIZE(true, true), FREEZE(false, true), THAW(false, true), MIGRATE(true, true), MKNOD(true, true), SYNC(false, false),
        REMOUNT(true, false), STATUS(false, false);

        final boolean takesArg;
        final boolean changes;

        Command(boolean takesArg, boolean changes) {
            this.takesArg = takesArg;
            this.changes = changes;
        }
    }

    /** Runs one command; returns what follows "ok ". */
    private String execute(String line) throws Ext4Exception {
        String[] words = line.split("\\s+", 2);
        String arg = words.length > 1 ? words[1].strip() : "";
        Command cmd;
        try {
            cmd = Command.valueOf(words[0].toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new Ext4Exception(Errno.EINVAL, "unknown command \"" + words[0] + "\" (commands: resize SIZE, freeze, thaw, migrate PATH,"
                    + " mknod PATH b/c MAJOR MINOR [MODE], sync, remount ro or rw, status)");
        }
        String name = cmd.name().toLowerCase(Locale.ROOT);
        if (cmd.takesArg == arg.isEmpty()) {
            throw new Ext4Exception(Errno.EINVAL, name + (cmd.takesArg ? " needs an argument" : " takes no argument"));
        }
        if (cmd.changes && fs.isReadOnly()) {
            throw new Ext4Exception(Errno.EROFS, "the filesystem is mounted read-only");
        }
        // root, or the mounting user of a fakeroot mount (CAP_MKNOD, which the kernel asks for
        // before a device node's mknod ever reaches FUSE)
        boolean root = Caller.isRoot();
        // only the user who mounted can open this file: on their own mount they act as its
        // administrator, so resize and migrate pass the core's root-or-owner checks
        Caller.set(0, 0);
        return switch (cmd) {
            case RESIZE -> {
                fs.resize(parseSize(arg, fs.superblock().blockSize()));
                yield "resized to " + fs.superblock().blocksCount() + " blocks";
            }
            case FREEZE -> {
                fs.freeze();
                yield "frozen";
            }
            case THAW -> {
                fs.thaw();
                yield "thawed";
            }
            case MIGRATE -> {
                long ino = fs.resolve(insideMount(arg).getBytes(StandardCharsets.ISO_8859_1));
                fs.migrate(ino);
                changes.inode(ino);
                yield "migrated " + arg;
            }
            case MKNOD -> mknod(arg, root);
            case SYNC -> {
                fs.sync();
                yield "synced";
            }
            case REMOUNT -> {
                if (!arg.equals("ro") && !arg.equals("rw")) {
                    throw new Ext4Exception(Errno.EINVAL, "remount takes ro or rw");
                }
                fs.remount(arg.equals("ro"));
                yield arg.equals("ro") ? "remounted read-only" : "remounted read-write";
            }
            case STATUS -> status();
        };
    }

    /**
     * {@code mknod PATH b|c MAJOR MINOR [MODE]}: a block or character device node owned by root,
     * mode 0600 unless MODE (octal) says otherwise. Only for root and the owner of a fakeroot mount.
     */
    private String mknod(String arg, boolean root) throws Ext4Exception {
        if (!root) {
            throw new Ext4Exception(Errno.EPERM, "mknod needs root, or the mounting user of a -o fakeroot mount");
        }
        String[] a = arg.split("\\s+");
        if (a.length < 4 || a.length > 5 || !(a[1].equals("b") || a[1].equals("c"))) {
            throw new Ext4Exception(Errno.EINVAL, "usage: mknod PATH b|c MAJOR MINOR [MODE]");
        }
        int major;
        int minor;
        int mode;
        try {
            major = Integer.parseInt(a[2]);
            minor = Integer.parseInt(a[3]);
            mode = a.length == 5 ? Integer.parseInt(a[4], 8) : 0600;
        } catch (NumberFormatException e) {
            throw new Ext4Exception(Errno.EINVAL, "mknod: MAJOR and MINOR are decimal numbers, MODE an octal one");
        }
        if (major < 0 || minor < 0 || major > 0xFFF || minor > 0xFFFFF || (mode & ~07777) != 0) {
            throw new Ext4Exception(Errno.EINVAL, "mknod: MAJOR 0..4095, MINOR 0..1048575, MODE 0..07777");
        }
        String p = insideMount(a[0]);
        int slash = p.lastIndexOf('/');
        String dir = slash <= 0 ? "/" : p.substring(0, slash);
        String leaf = p.substring(slash + 1);
        if (leaf.isEmpty() || leaf.equals(".") || leaf.equals("..")) {
            throw new Ext4Exception(Errno.EINVAL, "mknod: PATH must name a new entry");
        }
        long parent = fs.resolve(dir.getBytes(StandardCharsets.ISO_8859_1));
        if (isName(parent, leaf.getBytes(StandardCharsets.ISO_8859_1))) {
            throw new Ext4Exception(Errno.EEXIST, "the name is the control file's");
        }
        int type = a[1].equals("b") ? dev.ext4j.format.Inode.S_IFBLK : dev.ext4j.format.Inode.S_IFCHR;
        fs.mknod(parent, leaf.getBytes(StandardCharsets.ISO_8859_1), type | mode, major, minor, 0, 0);
        changes.entry(parent, leaf.getBytes(StandardCharsets.ISO_8859_1));
        return "made " + a[0];
    }

    /** A path inside the mount: absolute under the mount point, or relative to the mount root. */
    private String insideMount(String p) {
        if (mountPoint != null && (p.equals(mountPoint) || p.startsWith(mountPoint + "/"))) {
            return p.substring(mountPoint.length());
        }
        return p;
    }

    /**
     * A resize target in blocks: a plain number is blocks, a number with K, M, G or T (powers of
     * 1024) is bytes, rounded down to whole blocks.
     */
    static long parseSize(String s, int blockSize) throws Ext4Exception {
        String t = s.strip();
        boolean bytes = !t.isEmpty() && !Character.isDigit(t.charAt(t.length() - 1));
        long n;
        try {
            n = ByteSize.parse(t);
        } catch (IllegalArgumentException e) {
            throw new Ext4Exception(Errno.EINVAL, "size \"" + s + "\" is not a number of blocks or of bytes with K, M, G or T");
        }
        if (n <= 0) {
            throw new Ext4Exception(Errno.EINVAL, "size \"" + s + "\" is out of range");
        }
        return bytes ? n / blockSize : n;
    }

    /** The status text, "key: value" lines after a first line. */
    private String status() {
        FsStatus s = fs.status();
        return "status\n"
                + "size: " + s.sizeBytes() + "\n"
                + "block_size: " + s.blockSize() + "\n"
                + "blocks: " + s.blocks() + "\n"
                + "free_blocks: " + s.freeBlocks() + "\n"
                + "inodes: " + s.inodes() + "\n"
                + "free_inodes: " + s.freeInodes() + "\n"
                + "dirty_bytes: " + s.dirtyBytes() + "\n"
                + "frozen: " + (s.frozen() ? "yes" : "no") + "\n"
                + "errors: " + s.errorCount() + "\n"
                + "features: " + String.join(" ", s.features()) + "\n"
                + "read_only: " + (s.readOnlyWhy() == null ? "no" : "yes (" + s.readOnlyWhy() + ")") + "\n";
    }
}
