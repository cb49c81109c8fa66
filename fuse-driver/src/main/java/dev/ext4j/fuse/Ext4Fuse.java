package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.fs.FileAttributes;
import dev.ext4j.fs.StatFs;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.Struct;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The FUSE adapter: each callback resolves its path (through the core's dentry cache) and calls
 * ext4-core. Every callback runs inside {@link #guard}, the one place where core errors become
 * {@code -errno} and where an unexpected exception becomes EIO and a log line instead of a dead
 * mount. Open files and directories carry their inode number in the FUSE file handle.
 */
public final class Ext4Fuse extends FuseStubFS {
    private static final System.Logger LOG = System.getLogger("ext4j");
    private static final int O_ACCMODE = 3;
    private static final int O_RDONLY = 0;
    private static final int O_TRUNC = 01000;
    private static final int W_OK = 2;

    private final Ext4FileSystem fs;
    /** The charset jnr-ffi uses for path strings; names are converted back to bytes with it. */
    private final Charset charset = Charset.defaultCharset();

    public Ext4Fuse(Ext4FileSystem fs) {
        this.fs = fs;
    }

    /** The callback table to hand to libfuse. */
    public jnr.ffi.Struct operations() {
        return fuseOperations;
    }

    /** A callback body that may fail with the core's exception. */
    @FunctionalInterface
    interface Op {
        int run() throws Ext4Exception;
    }

    /** Runs a callback: errno translation and the catch-all live here and nowhere else. */
    int guard(String op, String path, Op body) {
        try {
            return body.run();
        } catch (Ext4Exception e) {
            Errno errno = e.errno();
            Level level = switch (errno) {
                case EUCLEAN, EBADMSG, EIO -> Level.ERROR;
                case ENOENT, ENODATA, ERANGE, ENOTDIR, EISDIR, EROFS, EACCES, EOPNOTSUPP, ENAMETOOLONG -> Level.DEBUG;
                default -> Level.INFO;
            };
            LOG.log(level, "{0} {1}: {2}", op, path, e);
            return -errno.value();
        } catch (RuntimeException | StackOverflowError e) {
            LOG.log(Level.ERROR, op + " " + path + ": unexpected failure, returning EIO", e);
            return -Errno.EIO.value();
        }
    }

    private byte[] bytes(String s) {
        return s.getBytes(charset);
    }

    /** Xattr names for the core: one char per byte. */
    private String xattrName(String s) {
        return new String(bytes(s), StandardCharsets.ISO_8859_1);
    }

    private long resolve(String path) throws Ext4Exception {
        return fs.resolve(bytes(path));
    }

    private static long handleOr(FuseFileInfo fi) {
        return fi == null ? 0 : fi.fh.get();
    }

    @Override
    public int getattr(String path, FileStat stat) {
        return guard("getattr", path, () -> {
            fill(stat, fs.stat(resolve(path)));
            return 0;
        });
    }

    @Override
    public int fgetattr(String path, FileStat stat, FuseFileInfo fi) {
        return guard("fgetattr", path, () -> {
            long ino = handleOr(fi);
            fill(stat, fs.stat(ino != 0 ? ino : resolve(path)));
            return 0;
        });
    }

    private static void fill(FileStat st, FileAttributes a) {
        st.st_ino.set(a.ino());
        st.st_mode.set(a.mode());
        st.st_nlink.set(a.nlink());
        st.st_uid.set(a.uid());
        st.st_gid.set(a.gid());
        st.st_size.set(a.size());
        st.st_blocks.set(a.blocks512());
        st.st_blksize.set(a.blockSize());
        st.st_rdev.set(makedev(a.rdevMajor(), a.rdevMinor()));
        setTime(st.st_atim, a.atimeSeconds(), a.atimeNanos());
        setTime(st.st_mtim, a.mtimeSeconds(), a.mtimeNanos());
        setTime(st.st_ctim, a.ctimeSeconds(), a.ctimeNanos());
    }

    private static void setTime(Timespec t, long sec, int nsec) {
        t.tv_sec.set(sec);
        t.tv_nsec.set(nsec);
    }

    /** glibc's makedev(). */
    static long makedev(long major, long minor) {
        return ((major & 0xFFFFF000L) << 32) | ((major & 0xFFFL) << 8) | ((minor & 0xFFFFFF00L) << 12) | (minor & 0xFFL);
    }

    @Override
    public int readlink(String path, Pointer buf, @size_t long size) {
        return guard("readlink", path, () -> {
            if (size <= 0) {
                return -Errno.EINVAL.value();
            }
            byte[] target = fs.readlink(resolve(path));
            int n = (int) Math.min(target.length, size - 1);
            buf.put(0, target, 0, n);
            buf.putByte(n, (byte) 0);
            return 0;
        });
    }

    @Override
    public int open(String path, FuseFileInfo fi) {
        return guard("open", path, () -> {
            long ino = resolve(path);
            int flags = fi.flags.get();
            if (fs.isReadOnly() && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0)) {
                return -Errno.EROFS.value();
            }
            fi.fh.set(ino);
            return 0;
        });
    }

    @Override
    public int read(String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
        return guard("read", path, () -> {
            long ino = handleOr(fi);
            if (ino == 0) {
                ino = resolve(path);
            }
            byte[] data = new byte[(int) Math.min(size, 1 << 24)];
            int n = fs.read(ino, offset, ByteBuffer.wrap(data));
            buf.put(0, data, 0, n);
            return n;
        });
    }

    @Override
    public int release(String path, FuseFileInfo fi) {
        return 0;
    }

    @Override
    public int opendir(String path, FuseFileInfo fi) {
        return guard("opendir", path, () -> {
            long ino = resolve(path);
            if ((fs.stat(ino).mode() & 0xF000) != 0x4000) {
                return -Errno.ENOTDIR.value();
            }
            fi.fh.set(ino);
            return 0;
        });
    }

    @Override
    public int readdir(String path, Pointer buf, FuseFillDir filler, @off_t long offset, FuseFileInfo fi) {
        return guard("readdir", path, () -> {
            long ino = handleOr(fi);
            if (ino == 0) {
                ino = resolve(path);
            }
            FileStat st = new FileStat(Runtime.getSystemRuntime());
            Pointer stp = Struct.getMemory(st);
            fs.readdir(ino, offset, (name, entryIno, fileType, next) -> {
                byte[] z = new byte[name.length + 1];
                System.arraycopy(name, 0, z, 0, name.length);
                st.st_ino.set(entryIno);
                st.st_mode.set(DT_TO_MODE[fileType < DT_TO_MODE.length ? fileType : 0]);
                return filler.apply(buf, ByteBuffer.wrap(z), stp, next) == 0;
            });
            return 0;
        });
    }

    /** ext4 dirent file_type to the S_IFMT bits readdir reports. */
    private static final int[] DT_TO_MODE = {0, 0x8000, 0x4000, 0x2000, 0x6000, 0x1000, 0xC000, 0xA000};

    @Override
    public int releasedir(String path, FuseFileInfo fi) {
        return 0;
    }

    @Override
    public int statfs(String path, Statvfs st) {
        return guard("statfs", path, () -> {
            StatFs s = fs.statfs();
            st.f_bsize.set(s.blockSize());
            st.f_frsize.set(s.blockSize());
            st.f_blocks.set(s.blocks());
            st.f_bfree.set(s.freeBlocks());
            st.f_bavail.set(s.availableBlocks());
            st.f_files.set(s.inodes());
            st.f_ffree.set(s.freeInodes());
            st.f_favail.set(s.freeInodes());
            st.f_namemax.set(s.nameMax());
            return 0;
        });
    }

    @Override
    public int getxattr(String path, String name, Pointer value, @size_t long size) {
        return guard("getxattr", path, () -> copyOut(fs.getXattr(resolve(path), xattrName(name)), value, size));
    }

    @Override
    public int listxattr(String path, Pointer list, @size_t long size) {
        return guard("listxattr", path, () -> {
            List<String> names = fs.listXattrs(resolve(path));
            int total = 0;
            for (String n : names) {
                total += n.length() + 1;
            }
            byte[] out = new byte[total];
            int off = 0;
            for (String n : names) {
                byte[] b = n.getBytes(StandardCharsets.ISO_8859_1);
                System.arraycopy(b, 0, out, off, b.length);
                off += b.length + 1;
            }
            return copyOut(out, list, size);
        });
    }

    /** The xattr size protocol: size 0 asks for the length, a short buffer is ERANGE. */
    private static int copyOut(byte[] data, Pointer dst, long size) {
        if (size == 0) {
            return data.length;
        }
        if (size < data.length) {
            return -Errno.ERANGE.value();
        }
        dst.put(0, data, 0, data.length);
        return data.length;
    }

    @Override
    public int access(String path, int mask) {
        return guard("access", path, () -> {
            resolve(path);
            return (mask & W_OK) != 0 && fs.isReadOnly() ? -Errno.EROFS.value() : 0;
        });
    }

    @Override
    public void destroy(Pointer initResult) {
        try {
            fs.close();
        } catch (IOException e) {
            LOG.log(Level.ERROR, "closing the image: {0}", e.toString());
        }
    }
}
