package dev.ext4j.fuse;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.annotations.Delegate;
import jnr.ffi.annotations.In;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import jnr.ffi.types.u_int64_t;

/**
 * libfuse 3's low-level API ({@code libfuse3.so.3}, libfuse 3.0 to 3.16), bound with jnr-ffi: the
 * session, the replies, the directory buffer helpers and the cache notifications, with the
 * offsets of the structs they take. {@code LibFuse3LayoutTest} compiles a program against the
 * installed {@code fuse_lowlevel.h} and checks every offset here against it.
 *
 * <p>Each callback of {@code struct fuse_lowlevel_ops} is one of the interfaces below, by
 * signature; {@link LowLevelOps} fills the table. Node ids and inode numbers are both
 * {@code fuse_ino_t}, a 64-bit unsigned integer.
 */
public interface LibFuse3 {
    /** The soname of the ABI bound here; libfuse 3.17 and later ({@code libfuse3.so.4}) changed structs. */
    String SONAME = "libfuse3.so.3";

    /** Loads the library, or fails with an {@link UnsatisfiedLinkError} that names it. */
    static LibFuse3 load() {
        return LibraryLoader.create(LibFuse3.class).failImmediately().load(SONAME);
    }

    // ---- struct fuse_lowlevel_ops: slot numbers (pointer-sized), in libfuse 3's order ----
    int OP_INIT = 0, OP_DESTROY = 1, OP_LOOKUP = 2, OP_FORGET = 3, OP_GETATTR = 4, OP_SETATTR = 5, OP_READLINK = 6,
            OP_MKNOD = 7, OP_MKDIR = 8, OP_UNLINK = 9, OP_RMDIR = 10, OP_SYMLINK = 11, OP_RENAME = 12, OP_LINK = 13,
            OP_OPEN = 14, OP_READ = 15, OP_WRITE = 16, OP_FLUSH = 17, OP_RELEASE = 18, OP_FSYNC = 19, OP_OPENDIR = 20,
            OP_READDIR = 21, OP_RELEASEDIR = 22, OP_FSYNCDIR = 23, OP_STATFS = 24, OP_SETXATTR = 25, OP_GETXATTR = 26,
            OP_LISTXATTR = 27, OP_REMOVEXATTR = 28, OP_ACCESS = 29, OP_CREATE = 30, OP_GETLK = 31, OP_SETLK = 32,
            OP_BMAP = 33, OP_IOCTL = 34, OP_POLL = 35, OP_WRITE_BUF = 36, OP_RETRIEVE_REPLY = 37, OP_FORGET_MULTI = 38,
            OP_FLOCK = 39, OP_FALLOCATE = 40, OP_READDIRPLUS = 41, OP_COPY_FILE_RANGE = 42, OP_LSEEK = 43;
    /** Slots in the table of libfuse 3.14 (sizeof(struct fuse_lowlevel_ops) / sizeof(void *)). */
    int OP_COUNT = 44;

    // ---- struct fuse_file_info ----
    int FI_FLAGS = 0;
    /** The bit-field word: writepage, direct_io, keep_cache, flush, nonseekable, flock_release, cache_readdir, noflush. */
    int FI_BITS = 4;
    int FI_FH = 16;
    int FI_SIZE = 40;
    int FI_DIRECT_IO = 1 << 1, FI_KEEP_CACHE = 1 << 2, FI_CACHE_READDIR = 1 << 6;

    // ---- struct fuse_entry_param ----
    int ENTRY_INO = 0, ENTRY_GENERATION = 8, ENTRY_ATTR = 16, ENTRY_ATTR_TIMEOUT = 160, ENTRY_ENTRY_TIMEOUT = 168;
    int ENTRY_SIZE = 176;
    /** sizeof(struct stat) on x86_64 and aarch64 glibc is at most this. */
    int STAT_SIZE = 144;

    // ---- struct fuse_conn_info ----
    int CONN_PROTO_MAJOR = 0, CONN_PROTO_MINOR = 4, CONN_MAX_WRITE = 8, CONN_MAX_READ = 12, CONN_MAX_READAHEAD = 16,
            CONN_CAPABLE = 20, CONN_WANT = 24, CONN_MAX_BACKGROUND = 28, CONN_TIME_GRAN = 36;

    /** FUSE_CAP_* bits of fuse_conn_info.capable and .want. */
    int CAP_ASYNC_READ = 1, CAP_POSIX_LOCKS = 1 << 1, CAP_ATOMIC_O_TRUNC = 1 << 3, CAP_EXPORT_SUPPORT = 1 << 4,
            CAP_DONT_MASK = 1 << 6, CAP_SPLICE_WRITE = 1 << 7, CAP_SPLICE_MOVE = 1 << 8, CAP_SPLICE_READ = 1 << 9,
            CAP_FLOCK_LOCKS = 1 << 10, CAP_IOCTL_DIR = 1 << 11, CAP_AUTO_INVAL_DATA = 1 << 12, CAP_READDIRPLUS = 1 << 13,
            CAP_READDIRPLUS_AUTO = 1 << 14, CAP_ASYNC_DIO = 1 << 15, CAP_WRITEBACK_CACHE = 1 << 16,
            CAP_PARALLEL_DIROPS = 1 << 18, CAP_POSIX_ACL = 1 << 19, CAP_HANDLE_KILLPRIV = 1 << 20,
            CAP_CACHE_SYMLINKS = 1 << 23, CAP_EXPLICIT_INVAL_DATA = 1 << 25;

    // ---- struct fuse_ctx ----
    int CTX_UID = 0, CTX_GID = 4, CTX_PID = 8, CTX_UMASK = 12;

    // ---- struct fuse_buf ----
    int BUF_SIZE = 0, BUF_MEM = 16, BUF_STRUCT_SIZE = 40;

    // ---- struct fuse_args ----
    int ARGS_ARGC = 0, ARGS_ARGV = 8, ARGS_SIZE = 24;

    /** struct fuse_forget_data: ino, nlookup. */
    int FORGET_DATA_SIZE = 16;

    /** to_set bits of setattr. */
    int SET_ATTR_MODE = 1, SET_ATTR_UID = 1 << 1, SET_ATTR_GID = 1 << 2, SET_ATTR_SIZE = 1 << 3,
            SET_ATTR_ATIME = 1 << 4, SET_ATTR_MTIME = 1 << 5, SET_ATTR_ATIME_NOW = 1 << 7, SET_ATTR_MTIME_NOW = 1 << 8,
            /** FUSE_SET_ATTR_KILL_SUID, the kernel's FATTR_KILL_SUIDGID: a truncate by a caller without CAP_FSETID (HANDLE_KILLPRIV_V2). */
            SET_ATTR_KILL_SUIDGID = 1 << 11;

    // ---- the session ----

    Pointer fuse_session_new(Pointer args, Pointer ops, @size_t long opSize, Pointer userData);

    int fuse_session_mount(Pointer se, String mountpoint);

    int fuse_session_fd(Pointer se);

    int fuse_session_receive_buf(Pointer se, Pointer buf);

    void fuse_session_process_buf(Pointer se, Pointer buf);

    int fuse_session_exited(Pointer se);

    void fuse_session_exit(Pointer se);

    void fuse_session_unmount(Pointer se);

    void fuse_session_destroy(Pointer se);

    // ---- replies: each ends its request ----

    int fuse_reply_err(Pointer req, int err);

    void fuse_reply_none(Pointer req);

    int fuse_reply_entry(Pointer req, Pointer entryParam);

    int fuse_reply_create(Pointer req, Pointer entryParam, Pointer fi);

    int fuse_reply_attr(Pointer req, Pointer stat, double attrTimeout);

    int fuse_reply_readlink(Pointer req, @In byte[] link);

    int fuse_reply_open(Pointer req, Pointer fi);

    int fuse_reply_write(Pointer req, @size_t long count);

    int fuse_reply_buf(Pointer req, Pointer buf, @size_t long size);

    int fuse_reply_statfs(Pointer req, Pointer statvfs);

    int fuse_reply_xattr(Pointer req, @size_t long count);

    int fuse_reply_ioctl(Pointer req, int result, Pointer buf, @size_t long size);

    int fuse_reply_lseek(Pointer req, @off_t long off);

    Pointer fuse_req_ctx(Pointer req);

    @size_t long fuse_add_direntry(Pointer req, Pointer buf, @size_t long bufSize, @In byte[] name, Pointer stat, @off_t long off);

    @size_t long fuse_add_direntry_plus(Pointer req, Pointer buf, @size_t long bufSize, @In byte[] name, Pointer entryParam,
                                        @off_t long off);

    // ---- telling the kernel what changed behind its back ----

    int fuse_lowlevel_notify_inval_inode(Pointer se, @u_int64_t long ino, @off_t long off, @off_t long len);

    int fuse_lowlevel_notify_inval_entry(Pointer se, @u_int64_t long parent, @In byte[] name, @size_t long nameLen);

    // ---- callback signatures ----

    /** init(userdata, conn). */
    interface Init {
        @Delegate
        void call(Pointer userData, Pointer conn);
    }

    /** destroy(userdata). */
    interface Destroy {
        @Delegate
        void call(Pointer userData);
    }

    /** readlink, statfs. */
    interface Ino {
        @Delegate
        void call(Pointer req, @u_int64_t long ino);
    }

    /** lookup, unlink, rmdir, removexattr. */
    interface InoName {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer name);
    }

    /** forget. */
    interface Forget {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, @u_int64_t long nlookup);
    }

    /** getattr, open, release, opendir, releasedir. */
    interface InoFi {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer fi);
    }

    /** setattr. */
    interface SetAttr {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer stat, int toSet, Pointer fi);
    }

    /** mknod. */
    interface Mknod {
        @Delegate
        void call(Pointer req, @u_int64_t long parent, Pointer name, int mode, @u_int64_t long rdev);
    }

    /** mkdir. */
    interface Mkdir {
        @Delegate
        void call(Pointer req, @u_int64_t long parent, Pointer name, int mode);
    }

    /** symlink. */
    interface Symlink {
        @Delegate
        void call(Pointer req, Pointer link, @u_int64_t long parent, Pointer name);
    }

    /** rename. */
    interface Rename {
        @Delegate
        void call(Pointer req, @u_int64_t long parent, Pointer name, @u_int64_t long newParent, Pointer newName, int flags);
    }

    /** link. */
    interface Link {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, @u_int64_t long newParent, Pointer newName);
    }

    /** read, readdir, readdirplus. */
    interface InoSizeOffFi {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, @size_t long size, @off_t long off, Pointer fi);
    }

    /** write. */
    interface Write {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer buf, @size_t long size, @off_t long off, Pointer fi);
    }

    /** fsync, fsyncdir. */
    interface InoIntFi {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, int datasync, Pointer fi);
    }

    /** setxattr. */
    interface SetXattr {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer name, Pointer value, @size_t long size, int flags);
    }

    /** getxattr. */
    interface GetXattr {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, Pointer name, @size_t long size);
    }

    /** listxattr. */
    interface ListXattr {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, @size_t long size);
    }

    /** access. */
    interface Access {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, int mask);
    }

    /** create. */
    interface Create {
        @Delegate
        void call(Pointer req, @u_int64_t long parent, Pointer name, int mode, Pointer fi);
    }

    /** ioctl (unsigned cmd since FUSE_USE_VERSION 35; the same ABI). */
    interface Ioctl {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, int cmd, Pointer arg, Pointer fi, int flags, Pointer inBuf,
                  @size_t long inBufSize, @size_t long outBufSize);
    }

    /** forget_multi. */
    interface ForgetMulti {
        @Delegate
        void call(Pointer req, @size_t long count, Pointer forgets);
    }

    /** fallocate. */
    interface Fallocate {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, int mode, @off_t long offset, @off_t long length, Pointer fi);
    }

    /** copy_file_range. */
    interface CopyFileRange {
        @Delegate
        void call(Pointer req, @u_int64_t long inoIn, @off_t long offIn, Pointer fiIn, @u_int64_t long inoOut,
                  @off_t long offOut, Pointer fiOut, @size_t long len, int flags);
    }

    /** lseek. */
    interface Lseek {
        @Delegate
        void call(Pointer req, @u_int64_t long ino, @off_t long off, int whence, Pointer fi);
    }
}
