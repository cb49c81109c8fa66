package dev.ext4j.fuse;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.fs.Ext4FileSystem;
import dev.ext4j.format.Inode;
import dev.ext4j.resize.OnlineResize;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The ioctls ext4j serves, decoded without FUSE: their numbers (include/uapi/linux/fs.h,
 * fs/ext4/ext4.h), what each asks for, and the layout of their arguments. All are restricted
 * ioctls: the kernel copies _IOC_SIZE(cmd) bytes in or out, and the FUSE library hands them over
 * as a buffer. FS_IOC_GETFLAGS/SETFLAGS arrive from the VFS fileattr code with a 4-byte int,
 * whatever size their number says. Arguments are C structs, in the machine's byte order.
 */
final class Ioctls {
    static final int FS_IOC_GETFLAGS = 0x80086601, FS_IOC_SETFLAGS = 0x40086602,
            FS_IOC32_GETFLAGS = 0x80046601, FS_IOC32_SETFLAGS = 0x40046602,
            EXT4_IOC_GROUP_EXTEND = 0x40086607, EXT4_IOC_GROUP_ADD = 0x40286608,
            EXT4_IOC_MIGRATE = 0x6609, EXT4_IOC_RESIZE_FS = 0x40086610,
            FS_IOC_FSGETXATTR = 0x801c581f, FS_IOC_FSSETXATTR = 0x401c5820;

    /** What an ioctl number asks for. */
    enum Command {
        /** FS_IOC_GETFLAGS, FS_IOC32_GETFLAGS: the inode flags out, an int. */
        GET_FLAGS,
        /** FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS: new inode flags in, an int. */
        SET_FLAGS,
        /** FS_IOC_FSGETXATTR: a struct fsxattr out. */
        FS_GET_XATTR,
        /** FS_IOC_FSSETXATTR: a struct fsxattr in; only fsx_xflags is used. */
        FS_SET_XATTR,
        /** EXT4_IOC_MIGRATE: no argument. */
        MIGRATE,
        /** EXT4_IOC_RESIZE_FS and EXT4_IOC_GROUP_EXTEND: the new block count in, a __u64. */
        RESIZE,
        /** EXT4_IOC_GROUP_ADD: a struct ext4_new_group_input in. */
        GROUP_ADD,
        /** Anything else: ENOTTY. */
        UNKNOWN
    }

    private Ioctls() {
    }

    /** The command {@code cmd} stands for. */
    static Command command(int cmd) {
        return switch (cmd) {
            case FS_IOC_GETFLAGS, FS_IOC32_GETFLAGS -> Command.GET_FLAGS;
            case FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS -> Command.SET_FLAGS;
            case FS_IOC_FSGETXATTR -> Command.FS_GET_XATTR;
            case FS_IOC_FSSETXATTR -> Command.FS_SET_XATTR;
            case EXT4_IOC_MIGRATE -> Command.MIGRATE;
            case EXT4_IOC_RESIZE_FS, EXT4_IOC_GROUP_EXTEND -> Command.RESIZE;
            case EXT4_IOC_GROUP_ADD -> Command.GROUP_ADD;
            default -> Command.UNKNOWN;
        };
    }

    /**
     * struct fsxattr's fsx_xflags against the inode flags (fileattr_fill_xflags()): the VFS reads
     * the old attributes of a FUSE file with FS_IOC_FSGETXATTR before every chattr.
     */
    private static final int[][] XFLAG_TO_FLAG = {
            {0x8, Inode.IMMUTABLE_FL}, {0x10, Inode.APPEND_FL}, {0x20, Inode.SYNC_FL}, {0x40, Inode.NOATIME_FL},
            {0x80, Inode.NODUMP_FL}, {0x8000, 0x2000000 /* FS_DAX_FL */}, {0x200, Inode.PROJINHERIT_FL}};

    /**
     * struct fsxattr, 28 bytes: __u32 fsx_xflags at 0, fsx_extsize at 4, fsx_nextents at 8,
     * fsx_projid at 12, fsx_cowextsize at 16, 8 bytes of padding.
     */
    static final int FSXATTR_SIZE = 28;
    private static final int FSX_XFLAGS = 0;

    /** The fsx_xflags bits for inode flags {@code flags}; flags without an xflag are left out. */
    static int toXflags(int flags) {
        int x = 0;
        for (int[] m : XFLAG_TO_FLAG) {
            x |= (flags & m[1]) != 0 ? m[0] : 0;
        }
        return x;
    }

    /** Inode flags {@code flags} with the ones fsx_xflags covers set as {@code xflags} says; the rest kept. */
    static int fromXflags(int xflags, int flags) {
        for (int[] m : XFLAG_TO_FLAG) {
            flags = (xflags & m[0]) != 0 ? flags | m[1] : flags & ~m[1];
        }
        return flags;
    }

    /** FS_IOC_FSGETXATTR's reply for inode flags {@code flags}: fsx_xflags, every other field 0. */
    static byte[] fsxattr(int flags) {
        byte[] b = new byte[FSXATTR_SIZE];
        ByteBuffer.wrap(b).order(ByteOrder.nativeOrder()).putInt(FSX_XFLAGS, toXflags(flags));
        return b;
    }

    /** fsx_xflags of the struct fsxattr in {@code data}. */
    static int xflags(ByteBuffer data) {
        return data.duplicate().order(ByteOrder.nativeOrder()).getInt(FSX_XFLAGS);
    }

    /**
     * struct ext4_new_group_input, 40 bytes on 64-bit Linux: __u32 group at 0 (4 bytes of padding
     * follow), __u64 block_bitmap at 8, inode_bitmap at 16, inode_table at 24, __u32 blocks_count at
     * 32, __u16 reserved_blocks at 36, __u16 unused at 38.
     */
    static final int NEW_GROUP_INPUT_SIZE = 40;
    private static final int NG_GROUP = 0, NG_BLOCK_BITMAP = 8, NG_INODE_BITMAP = 16, NG_INODE_TABLE = 24,
            NG_BLOCKS_COUNT = 32, NG_RESERVED_BLOCKS = 36;

    /** The struct ext4_new_group_input in {@code data}. */
    static OnlineResize.NewGroup newGroupInput(ByteBuffer data) {
        ByteBuffer d = data.duplicate().order(ByteOrder.nativeOrder());
        return new OnlineResize.NewGroup(d.getInt(NG_GROUP) & 0xFFFFFFFFL, d.getLong(NG_BLOCK_BITMAP), d.getLong(NG_INODE_BITMAP),
                d.getLong(NG_INODE_TABLE), d.getInt(NG_BLOCKS_COUNT) & 0xFFFFFFFFL, d.getShort(NG_RESERVED_BLOCKS) & 0xFFFF);
    }

    /** Whether ioctl {@code cmd} changes what stat shows of its inode (ctime, blocks). */
    static boolean changesInode(int cmd) {
        Command c = command(cmd);
        return c == Command.SET_FLAGS || c == Command.FS_SET_XATTR || c == Command.MIGRATE;
    }

    /**
     * How many bytes of argument the kernel copies in or out of restricted ioctl {@code cmd}:
     * _IOC_SIZE(cmd), but 4 for the flags, which the VFS passes as an int.
     */
    static int argumentSize(int cmd) {
        Command c = command(cmd);
        return c == Command.GET_FLAGS || c == Command.SET_FLAGS ? 4 : (cmd >>> 16) & 0x3FFF;
    }

    /**
     * Runs ioctl {@code cmd} on inode {@code ino} with argument bytes {@code in}; returns what goes
     * back to the caller (empty for none). Who may do what is the core's decision (Ioctl,
     * Permissions); ENOTTY for an ioctl ext4j does not serve.
     */
    static byte[] run(Ext4FileSystem fs, long ino, int cmd, ByteBuffer in) throws Ext4Exception {
        ByteBuffer arg = in.order(ByteOrder.nativeOrder());
        switch (command(cmd)) {
            case GET_FLAGS -> {
                return ByteBuffer.allocate(4).order(ByteOrder.nativeOrder()).putInt(0, fs.getFlags(ino)).array();
            }
            case SET_FLAGS -> fs.setFlags(ino, arg.getInt(0));
            case FS_GET_XATTR -> {
                return fsxattr(fs.getFlags(ino));
            }
            case FS_SET_XATTR -> fs.setFlags(ino, fromXflags(xflags(arg), fs.getFlags(ino)));
            case MIGRATE -> fs.migrate(ino);
            case RESIZE -> fs.resize(arg.getLong(0)); // both carry the new block count
            case GROUP_ADD -> fs.addGroup(newGroupInput(arg));
            case UNKNOWN -> throw new Ext4Exception(Errno.ENOTTY, "ioctl 0x" + Integer.toHexString(cmd) + " is not served");
        }
        return new byte[0];
    }
}
