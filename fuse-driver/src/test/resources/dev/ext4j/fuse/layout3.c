/* Prints the offsets LibFuse3 binds, as "NAME VALUE" lines, from the installed fuse_lowlevel.h. */
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define OP(f) printf("OP_%s %zu\n", #f, offsetof(struct fuse_lowlevel_ops, f) / sizeof(void *))
#define OFF(name, type, f) printf("%s %zu\n", name, offsetof(type, f))

int main(void) {
    OP(init); OP(destroy); OP(lookup); OP(forget); OP(getattr); OP(setattr); OP(readlink); OP(mknod);
    OP(mkdir); OP(unlink); OP(rmdir); OP(symlink); OP(rename); OP(link); OP(open); OP(read); OP(write);
    OP(flush); OP(release); OP(fsync); OP(opendir); OP(readdir); OP(releasedir); OP(fsyncdir); OP(statfs);
    OP(setxattr); OP(getxattr); OP(listxattr); OP(removexattr); OP(access); OP(create); OP(getlk);
    OP(setlk); OP(bmap); OP(ioctl); OP(poll); OP(write_buf); OP(retrieve_reply); OP(forget_multi);
    OP(flock); OP(fallocate); OP(readdirplus); OP(copy_file_range); OP(lseek);
    printf("OP_COUNT %zu\n", sizeof(struct fuse_lowlevel_ops) / sizeof(void *));
    OFF("FI_FLAGS", struct fuse_file_info, flags);
    OFF("FI_FH", struct fuse_file_info, fh);
    printf("FI_SIZE %zu\n", sizeof(struct fuse_file_info));
    {
        /* the bit-field word: set each flag and find its bit */
        struct fuse_file_info fi = {0};
        unsigned int w;
        size_t at = 0;
        fi.direct_io = 1;
        while (((unsigned char *) &fi)[at] == 0) at++;
        printf("FI_BITS %zu\n", at / 4 * 4);
        fi.direct_io = 0;
        fi.direct_io = 1; memcpy(&w, (char *) &fi + at / 4 * 4, 4); printf("FI_DIRECT_IO %u\n", w); fi.direct_io = 0;
        fi.keep_cache = 1; memcpy(&w, (char *) &fi + at / 4 * 4, 4); printf("FI_KEEP_CACHE %u\n", w); fi.keep_cache = 0;
        fi.cache_readdir = 1; memcpy(&w, (char *) &fi + at / 4 * 4, 4); printf("FI_CACHE_READDIR %u\n", w);
    }
    OFF("ENTRY_INO", struct fuse_entry_param, ino);
    OFF("ENTRY_GENERATION", struct fuse_entry_param, generation);
    OFF("ENTRY_ATTR", struct fuse_entry_param, attr);
    OFF("ENTRY_ATTR_TIMEOUT", struct fuse_entry_param, attr_timeout);
    OFF("ENTRY_ENTRY_TIMEOUT", struct fuse_entry_param, entry_timeout);
    printf("ENTRY_SIZE %zu\n", sizeof(struct fuse_entry_param));
    printf("STAT_SIZE %zu\n", sizeof(struct stat));
    OFF("CONN_PROTO_MAJOR", struct fuse_conn_info, proto_major);
    OFF("CONN_PROTO_MINOR", struct fuse_conn_info, proto_minor);
    OFF("CONN_MAX_WRITE", struct fuse_conn_info, max_write);
    OFF("CONN_MAX_READ", struct fuse_conn_info, max_read);
    OFF("CONN_MAX_READAHEAD", struct fuse_conn_info, max_readahead);
    OFF("CONN_CAPABLE", struct fuse_conn_info, capable);
    OFF("CONN_WANT", struct fuse_conn_info, want);
    OFF("CONN_MAX_BACKGROUND", struct fuse_conn_info, max_background);
    OFF("CONN_TIME_GRAN", struct fuse_conn_info, time_gran);
    OFF("CTX_UID", struct fuse_ctx, uid);
    OFF("CTX_GID", struct fuse_ctx, gid);
    OFF("CTX_PID", struct fuse_ctx, pid);
    OFF("CTX_UMASK", struct fuse_ctx, umask);
    OFF("BUF_SIZE", struct fuse_buf, size);
    OFF("BUF_MEM", struct fuse_buf, mem);
    printf("BUF_STRUCT_SIZE %zu\n", sizeof(struct fuse_buf));
    OFF("ARGS_ARGC", struct fuse_args, argc);
    OFF("ARGS_ARGV", struct fuse_args, argv);
    printf("ARGS_SIZE %zu\n", sizeof(struct fuse_args));
    printf("FORGET_DATA_SIZE %zu\n", sizeof(struct fuse_forget_data));
    printf("CAP_ASYNC_READ %d\nCAP_POSIX_LOCKS %d\nCAP_ATOMIC_O_TRUNC %d\nCAP_EXPORT_SUPPORT %d\nCAP_DONT_MASK %d\n",
           FUSE_CAP_ASYNC_READ, FUSE_CAP_POSIX_LOCKS, FUSE_CAP_ATOMIC_O_TRUNC, FUSE_CAP_EXPORT_SUPPORT, FUSE_CAP_DONT_MASK);
    printf("CAP_SPLICE_WRITE %d\nCAP_SPLICE_MOVE %d\nCAP_SPLICE_READ %d\nCAP_FLOCK_LOCKS %d\nCAP_IOCTL_DIR %d\n",
           FUSE_CAP_SPLICE_WRITE, FUSE_CAP_SPLICE_MOVE, FUSE_CAP_SPLICE_READ, FUSE_CAP_FLOCK_LOCKS, FUSE_CAP_IOCTL_DIR);
    printf("CAP_AUTO_INVAL_DATA %d\nCAP_READDIRPLUS %d\nCAP_READDIRPLUS_AUTO %d\nCAP_ASYNC_DIO %d\nCAP_WRITEBACK_CACHE %d\n",
           FUSE_CAP_AUTO_INVAL_DATA, FUSE_CAP_READDIRPLUS, FUSE_CAP_READDIRPLUS_AUTO, FUSE_CAP_ASYNC_DIO, FUSE_CAP_WRITEBACK_CACHE);
    printf("CAP_PARALLEL_DIROPS %d\nCAP_POSIX_ACL %d\nCAP_HANDLE_KILLPRIV %d\nCAP_CACHE_SYMLINKS %d\nCAP_EXPLICIT_INVAL_DATA %d\n",
           FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_POSIX_ACL, FUSE_CAP_HANDLE_KILLPRIV, FUSE_CAP_CACHE_SYMLINKS, FUSE_CAP_EXPLICIT_INVAL_DATA);
    printf("SET_ATTR_MODE %d\nSET_ATTR_UID %d\nSET_ATTR_GID %d\nSET_ATTR_SIZE %d\nSET_ATTR_ATIME %d\n",
           FUSE_SET_ATTR_MODE, FUSE_SET_ATTR_UID, FUSE_SET_ATTR_GID, FUSE_SET_ATTR_SIZE, FUSE_SET_ATTR_ATIME);
    printf("SET_ATTR_MTIME %d\nSET_ATTR_ATIME_NOW %d\nSET_ATTR_MTIME_NOW %d\nSET_ATTR_KILL_SUIDGID %d\n",
           FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_ATIME_NOW, FUSE_SET_ATTR_MTIME_NOW, FUSE_SET_ATTR_KILL_SUID);
    return 0;
}
